// The transcript reader: text by speaker, a player synced to the words, corrections,
// speaker names, export.

import { ApiError, download, getJson, jobPath, mediaLink } from "./api.js";
import { announce, clearError, el, formatTime, showError, speakerColour } from "./util.js";
import { SpeakerPanel } from "./speakers.js";

const VIDEO = /\.(mp4|m4v|webm|mov|mkv|ogv)$/i;
const LOW_CONFIDENCE = 0.5;
// A word stays highlighted this long after its end, bridging the gaps between words.
const LINGER = 0.25;
const SKIP_SECONDS = 5;

// What an edit changes (a segment's text, its words, a speaker's name), not what to: a
// later edit of the same that saves answers the error of one that did not (showError).
function editAction(jobId, changes) {
  const targets = (changes.segments || []).map((segment) => (segment.words
    ? `words:${segment.id}:${segment.words.map((word) => word.index).join(",")}`
    : `text:${segment.id}`));
  for (const id of Object.keys(changes.speakers || {})) targets.push(`speaker:${id}`);
  return `edit:${jobId}:${targets.join(";")}`;
}

export class Reader {
  constructor({ onClose }) {
    this.onClose = onClose;
    this.section = document.getElementById("reader");
    this.title = document.getElementById("reader-h");
    this.playerBox = document.getElementById("player-box");
    this.body = document.getElementById("transcript");
    this.revisionInfo = document.getElementById("revision-info");
    this.restoreButton = document.getElementById("restore");
    this.speakers = new SpeakerPanel(this);
    this.jobId = null;
    this.data = null;
    this.player = null;
    this.words = [];
    this.current = null;
    this.activeSegment = null;
    this.frame = 0;
    document.getElementById("reader-close").addEventListener("click", () => this.onClose());
    this.restoreButton.addEventListener("click", () => this.restore());
    for (const button of this.section.querySelectorAll(".exports button")) {
      button.addEventListener("click", () => this.export(button.dataset.format));
    }
    this.body.addEventListener("click", (event) => this.onClick(event));
    this.body.addEventListener("dblclick", (event) => this.onDoubleClick(event));
    document.addEventListener("keydown", (event) => this.onKey(event));
  }

  get transcript() {
    return this.data ? this.data.transcript : null;
  }

  async open(jobId, { time = null, segment = null } = {}) {
    if (jobId !== this.jobId) {
      this.data = await getJson(jobPath(jobId, "/transcript"));
      this.jobId = jobId;
      this.makePlayer();
    }
    this.section.hidden = false;
    this.render();
    if (segment !== null || time !== null) this.jumpTo(segment, time);
    else this.title.focus(); // and into view: below the job list on a phone
  }

  close() {
    this.stopSync();
    if (this.player) {
      this.player.pause();
      this.player.removeAttribute("src");
      this.player.load();
    }
    this.playerBox.replaceChildren();
    this.player = null;
    this.section.hidden = true;
    this.jobId = null;
    this.data = null;
  }

  makePlayer() {
    const filename = this.data.filename;
    const tag = VIDEO.test(filename) ? "video" : "audio";
    this.player = el(tag, { controls: true, preload: "metadata", id: "player",
      "aria-label": `Recording: ${filename}` });
    this.relinked = false;
    this.player.addEventListener("play", () => this.startSync());
    this.player.addEventListener("pause", () => this.stopSync());
    this.player.addEventListener("seeked", () => this.highlight(this.player.currentTime, true));
    this.player.addEventListener("timeupdate", () => {
      if (this.player.paused) this.highlight(this.player.currentTime);
    });
    const playing = `play:${this.jobId}`;
    this.player.addEventListener("loadedmetadata", () => {
      this.relinked = false;
      clearError(playing);
    });
    this.player.addEventListener("error", () => {
      // Links expire: the first failure gets a fresh link, resumed where it was.
      if (!this.relinked) {
        this.relinked = true;
        this.loadMedia(this.player.currentTime, !this.player.paused);
        return;
      }
      showError("The recording cannot be played here (it may have been deleted, or this "
        + "browser cannot decode its format). The transcript is still readable.", playing);
    });
    this.playerBox.replaceChildren(this.player);
    this.loadMedia();
  }

  // Point the player at a fresh signed link to the recording (see mediaLink).
  async loadMedia(resumeAt = 0, resumePlaying = false) {
    const player = this.player;
    let link;
    try {
      link = await mediaLink(this.jobId);
    } catch (error) {
      if (this.player === player) {
        showError(`The recording cannot be played: ${error.describe ? error.describe()
          : error.message}. The transcript is still readable.`, `play:${this.jobId}`);
      }
      return;
    }
    if (this.player !== player) return; // closed, or another transcript opened meanwhile
    if (resumeAt > 0 || resumePlaying) {
      player.addEventListener("loadedmetadata", () => {
        player.currentTime = resumeAt;
        if (resumePlaying) player.play().catch(() => {});
      }, { once: true });
    }
    player.src = link;
  }

  // --- rendering ------------------------------------------------------------------------

  speakerIds() {
    const ids = this.transcript.speakers.map((s) => s.id);
    for (const segment of this.transcript.segments) {
      if (segment.speaker && !ids.includes(segment.speaker)) ids.push(segment.speaker);
    }
    return ids;
  }

  speakerLabel(id) {
    const speaker = this.transcript.speakers.find((s) => s.id === id);
    return (speaker && speaker.name) || id;
  }

  colourOf(id) {
    return speakerColour(this.speakerIds().indexOf(id));
  }

  render() {
    const { filename, revision, edited } = this.data;
    this.title.textContent = filename;
    this.title.tabIndex = -1;
    this.revisionInfo.textContent = edited ? `Edited · revision ${revision}` : "Original";
    this.restoreButton.disabled = !edited;
    this.speakers.render();
    this.renderText();
    if (this.player) this.highlight(this.player.currentTime, true);
  }

  renderText() {
    const turns = [];
    for (const segment of this.transcript.segments) {
      const last = turns[turns.length - 1];
      if (last && last.speaker === segment.speaker) last.segments.push(segment);
      else turns.push({ speaker: segment.speaker, segments: [segment] });
    }
    this.words = [];
    this.current = null;
    this.activeSegment = null;
    const nodes = turns.map((turn) => this.turnNode(turn));
    if (!nodes.length) nodes.push(el("p", { class: "empty" }, "No speech was recognised."));
    this.body.replaceChildren(...nodes);
    this.words.sort((a, b) => a.start - b.start);
  }

  turnNode(turn) {
    const node = el("section", { class: "turn", "data-speaker": turn.speaker || "" });
    const colour = turn.speaker ? this.colourOf(turn.speaker) : null;
    if (colour) {
      node.style.setProperty("--c", colour);
      node.style.setProperty("--c-text", colour);
    }
    if (turn.speaker) {
      node.append(el("div", { class: "turn-head" },
        el("span", { class: "turn-speaker" }, this.speakerLabel(turn.speaker)),
        el("span", { class: "help" }, formatTime(turn.segments[0].start))));
    }
    node.append(...turn.segments.map((segment) => this.segmentNode(segment)));
    return node;
  }

  segmentNode(segment) {
    const at = formatTime(segment.start);
    const node = el("p", { class: "seg", id: `seg-${segment.id}`, tabindex: "-1",
      "data-id": String(segment.id), "data-start": String(segment.start),
      "data-end": String(segment.end) },
    el("span", { class: "seg-tools" },
      el("button", { type: "button", class: "time", "data-start": String(segment.start),
        "aria-label": `Play from ${at}` }, at),
      el("button", { type: "button", class: "edit-seg", "aria-label": `Edit the text at ${at}` },
        "edit")));
    if (!segment.words.length) {
      node.append(el("span", { class: "seg-text" }, segment.text));
      return node;
    }
    segment.words.forEach((word, index) => {
      const probability = word.probability;
      const low = probability !== null && probability !== undefined && probability < LOW_CONFIDENCE;
      const span = el("span", { class: low ? "w low" : "w", "data-i": String(index),
        "data-start": String(word.start), "data-end": String(word.end),
        title: low ? `Low confidence (${Math.round(probability * 100)}%)` : null },
      word.word.trim());
      // Words say whether a space precedes them (none inside Japanese, after a hyphen).
      if (index && word.leading_space !== false) node.append(" ");
      node.append(span);
      this.words.push({ start: word.start, end: word.end, node: span, segment: node });
    });
    return node;
  }

  // --- the player -----------------------------------------------------------------------

  seek(seconds, play = true) {
    const player = this.player;
    if (!player) return;
    const go = () => {
      player.currentTime = Math.max(0, seconds);
      this.highlight(seconds, true);
      if (play) player.play().catch(() => {});
    };
    if (player.readyState >= 1) go();
    else player.addEventListener("loadedmetadata", go, { once: true });
  }

  startSync() {
    cancelAnimationFrame(this.frame);
    const tick = () => {
      this.highlight(this.player.currentTime);
      if (!this.player.paused) this.frame = requestAnimationFrame(tick);
    };
    this.frame = requestAnimationFrame(tick);
  }

  stopSync() {
    cancelAnimationFrame(this.frame);
  }

  highlight(time, jumped = false) {
    let low = 0;
    let high = this.words.length - 1;
    let found = -1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      if (this.words[middle].start <= time + 0.01) {
        found = middle;
        low = middle + 1;
      } else {
        high = middle - 1;
      }
    }
    const word = found >= 0 && time <= this.words[found].end + LINGER ? this.words[found] : null;
    const node = word ? word.node : null;
    if (node !== this.current) {
      if (this.current) this.current.classList.remove("current");
      if (node) node.classList.add("current");
      this.current = node;
      const editing = this.body.contains(document.activeElement)
        && document.activeElement.matches("input, textarea");
      if (node && (jumped || !this.player.paused) && !editing) {
        node.scrollIntoView({ block: "nearest", behavior: jumped ? "auto" : "smooth" });
      }
    }
    const segment = word ? word.segment : null;
    if (segment !== this.activeSegment) {
      if (this.activeSegment) this.activeSegment.classList.remove("active");
      if (segment) segment.classList.add("active");
      this.activeSegment = segment;
    }
  }

  jumpTo(segmentId, time) {
    for (const old of this.body.querySelectorAll(".seg.target")) old.classList.remove("target");
    const node = segmentId !== null ? document.getElementById(`seg-${segmentId}`) : null;
    const start = time !== null ? time : node ? Number(node.dataset.start) : 0;
    if (node) {
      node.classList.add("target");
      node.scrollIntoView({ block: "center" });
      node.focus({ preventScroll: true });
    }
    this.seek(start, false);
  }

  onKey(event) {
    if (this.section.hidden || !this.player || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target.closest("input, textarea, select, [contenteditable]")) return;
    if (target === this.player) return; // the player's own controls handle its keys
    const key = event.key;
    if (key === " " && target.closest("button, a, summary")) return; // activate the control
    if (key === " " || key === "k" || key === "K") {
      if (this.player.paused) this.player.play().catch(() => {});
      else this.player.pause();
    } else if (key === "j" || key === "J" || key === "ArrowLeft") {
      this.seek(this.player.currentTime - SKIP_SECONDS, !this.player.paused);
    } else if (key === "l" || key === "L" || key === "ArrowRight") {
      this.seek(this.player.currentTime + SKIP_SECONDS, !this.player.paused);
    } else {
      return;
    }
    event.preventDefault();
  }

  onClick(event) {
    const word = event.target.closest(".w");
    if (word) {
      this.seek(Number(word.dataset.start));
      return;
    }
    const time = event.target.closest(".time");
    if (time) {
      this.seek(Number(time.dataset.start));
      return;
    }
    const text = event.target.closest(".seg-text");
    if (text) {
      this.seek(Number(text.closest(".seg").dataset.start));
      return;
    }
    const edit = event.target.closest(".edit-seg");
    if (edit) this.editSegment(edit.closest(".seg"));
  }

  // --- corrections ----------------------------------------------------------------------

  onDoubleClick(event) {
    const word = event.target.closest(".w");
    if (!word) return;
    event.preventDefault();
    if (this.player) this.player.pause();
    this.editWord(word);
  }

  editWord(span) {
    const segmentId = Number(span.closest(".seg").dataset.id);
    const index = Number(span.dataset.i);
    const before = span.textContent;
    const input = el("input", { class: "word-input", value: before, size: Math.max(4, before.length + 2),
      "aria-label": `Correct the word “${before}”`, spellcheck: "true" });
    span.replaceWith(input);
    input.focus();
    input.select();
    let finished = false;
    const finish = async (keep) => {
      if (finished) return;
      finished = true;
      const after = input.value.trim();
      if (!keep || !after || after === before) {
        input.replaceWith(span);
        span.focus?.();
        return;
      }
      await this.save({ segments: [{ id: segmentId, words: [{ index, word: after }] }] },
        `Word changed to “${after}”`);
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") { event.preventDefault(); finish(true); }
      if (event.key === "Escape") { event.preventDefault(); finish(false); }
    });
    input.addEventListener("blur", () => finish(true));
  }

  editSegment(node) {
    const id = Number(node.dataset.id);
    const segment = this.transcript.segments.find((s) => s.id === id);
    const area = el("textarea", { "aria-label": `Text of the segment at ${formatTime(segment.start)}` });
    area.value = segment.text;
    const form = el("form", { class: "seg-editor" }, area,
      el("div", { class: "row" },
        el("button", { type: "submit", class: "small" }, "Save"),
        el("button", { type: "button", class: "secondary small",
          onclick: () => { form.replaceWith(node); node.focus(); } }, "Cancel")));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (area.value.trim() === segment.text.trim()) {
        form.replaceWith(node);
        return;
      }
      this.save({ segments: [{ id, text: area.value }] }, "Segment text saved");
    });
    node.replaceWith(form);
    area.focus();
  }

  // Send changes as a new revision, built on the revision shown.
  async save(changes, message) {
    const action = editAction(this.jobId, changes);
    try {
      const body = { base_revision: this.data.latest_revision, ...changes };
      const answer = await getJson(jobPath(this.jobId, "/transcript"), { method: "PUT", json: body });
      this.update(answer);
      clearError(action);
      announce(answer.changed ? `${message} (revision ${answer.revision})` : "Nothing changed");
      return true;
    } catch (error) {
      await this.recover(error, action);
      return false;
    }
  }

  update(answer) {
    this.data = answer;
    this.render();
  }

  // Show why a change failed (`action`: what failed, see showError) and the transcript
  // as it is now.
  async recover(error, action) {
    showError(error, action);
    if (error instanceof ApiError && error.code === "REVISION_CONFLICT") {
      this.update(await getJson(jobPath(this.jobId, "/transcript")));
    } else {
      this.render(); // put back what an unsaved editor replaced
    }
  }

  async restore() {
    try {
      const answer = await getJson(jobPath(this.jobId, "/transcript/restore"), { method: "POST",
        json: { revision: 0, base_revision: this.data.latest_revision } });
      this.update(answer);
      clearError(`restore:${this.jobId}`);
      announce(`Original transcript restored (revision ${answer.revision})`);
    } catch (error) {
      await this.recover(error, `restore:${this.jobId}`);
    }
  }

  async export(format) {
    const stem = this.data.filename.replace(/\.[^.]+$/, "") || "transcript";
    try {
      const file = await download(jobPath(this.jobId, `/result?format=${format}`), `${stem}.${format}`);
      clearError(`export:${this.jobId}:${format}`);
      announce(`Downloaded ${file.name}`);
    } catch (error) {
      showError(error, `export:${this.jobId}:${format}`);
    }
  }
}
