import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hark.cli import app
from hark.config import get_settings
from hark.errors import ManifestError
from hark.evaluation.asr import read_manifest
from hark.evaluation.scoring import count_errors, normalize, total


def test_english_is_normalised_like_whispers_evaluation() -> None:
    assert normalize("Mr. Quilter, the apostle!", "en") == "mister quilter the apostle"
    assert normalize("It costs twenty dollars.", "en") == normalize("It costs $20", "en")
    assert normalize("Uh, I colour it, um, grey", "en") == normalize("I color it gray", "en")


def test_word_and_character_error_rates() -> None:
    errors = count_errors("the cat sat on the mat", "the cat sat on a hat", "en")
    assert (errors.substitutions, errors.deletions, errors.insertions) == (2, 0, 0)
    assert errors.rate == pytest.approx(2 / 6)
    assert count_errors("The cat.", "", "en").rate == 1.0
    # Japanese is scored per character, spaces ignored.
    cer = count_errors("今日は良い天気", "今日 は 良い 電気", "ja")
    assert cer.reference_length == 7 and cer.errors == 1
    pooled = total([count_errors("a b c d", "a b c d", "en"), count_errors("a b", "x b", "en")])
    assert pooled.rate == pytest.approx(1 / 6)


def test_manifest_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "audio": "a.wav", "text": "hi"}\n{"id": "b", "audio"\n')
    with pytest.raises(ManifestError) as info:
        read_manifest(bad)
    assert info.value.details["line"] == 2
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.wav").write_bytes(b"")
    good = tmp_path / "sub" / "m.jsonl"
    good.write_text('{"id": "a", "audio": "a.wav", "text": "hi", "language": "de"}\n'
                    '{"id": "b", "audio": "sub/a.wav", "text": "ho"}\n')
    items = read_manifest(good)
    assert [i.language for i in items] == ["de", "en"]
    assert items[0].audio == tmp_path / "sub" / "a.wav"
    assert [i.id for i in read_manifest(good, {"en"})] == ["b"]


def test_eval_command_rejects_a_missing_manifest(cli_env: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "none.jsonl")])
    assert result.exit_code == 1 and "INVALID_MANIFEST" in result.stderr


@pytest.mark.corpus
def test_pocketsphinx_on_english_corpus_items(cli_env: Path, corpus_dir: Path, tmp_path: Path
                                              ) -> None:
    """Eight English items, scored, and the Swedish items pocketsphinx must decline. The
    whole set's figure is the benchmark's (benchmarks/asr_pocketsphinx.py): here the
    bound only tells a working recogniser from a broken one."""
    rows = [json.loads(line) for line in
            (corpus_dir / "asr" / "manifest.jsonl").read_text().splitlines() if line.strip()]
    chosen = [r for r in rows if r["language"] == "en"][:8] + \
        [r for r in rows if r["language"] == "sv"]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({**r, "audio": str(corpus_dir / r["audio"])}) + "\n"
                                for r in chosen))
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(app, [
        "eval", str(manifest), "-m", "pocketsphinx", "--languages", "en,sv",
        "--json", str(report_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert report["model"] == "pocketsphinx/en-us"
    english = [i for i in report["items"] if i["language"] == "en"]
    swedish = [i for i in report["items"] if i["language"] == "sv"]
    assert len(english) == 8 and len(swedish) == 3
    assert all(i["error_rate"] is None and "UNSUPPORTED_LANGUAGE" in i["error"] for i in swedish)
    assert all(i["error_rate"] is not None and i["speed"] > 0 for i in english)
    summary = report["summary"]["en"]
    assert summary["items"] == 8
    # The whole set scores about 0.43; a broken recogniser scores near 1.
    assert summary["error_rate"] <= 0.6
    assert "Corpus" in result.stdout and "3 item(s) not scored" in result.stdout


@pytest.mark.corpus
def test_diarization_eval_reports_der_and_speaker_counts(
    cli_env: Path, corpus_dir: Path, tmp_path: Path
) -> None:
    report_path = tmp_path / "der.json"
    result = CliRunner().invoke(app, [
        "eval", "--diarization", str(corpus_dir / "diarization" / "manifest.jsonl"),
        "--json", str(report_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert {i["id"] for i in report["items"]} == {"pyannote_sample", "pyannote_debug_dev00"}
    for item in report["items"]:
        assert item["reference_speakers"] == 2 and item["found_speakers"] == 2
        c0, c25 = item["components"]["collar 0"], item["components"]["collar 0.25"]
        assert c0["der"] == pytest.approx(c0["miss"] + c0["false_alarm"] + c0["confusion"])
        assert c25["der"] <= c0["der"]
    assert report["summary"]["collar 0"]["der"] <= 0.30
    assert "overall DER (collar 0)" in result.stdout and "x real time" in result.stdout


@pytest.mark.corpus
def test_diarization_eval_with_words_scores_what_users_see(
    cli_env: Path, corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARK_MODEL_PACKAGES", "true")  # real Whisper tiny.en
    get_settings.cache_clear()
    manifest = str(corpus_dir / "diarization" / "manifest.jsonl")
    report_path = tmp_path / "words.json"
    result = CliRunner().invoke(app, ["eval", "--diarization", manifest, "--words",
                                      "-m", "tiny.en", "--json", str(report_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    for item in report["items"]:
        wrong, scored = item["word_errors"]
        assert scored >= 50 and 0 <= wrong <= scored
        seen = item["transcript_components"]["collar 0"]
        assert seen["der"] == pytest.approx(seen["miss"] + seen["false_alarm"]
                                            + seen["confusion"])
    # Two voices about evenly matched: words given to the wrong one would score near 0.5.
    assert report["word_speaker_error"] <= 0.15
    assert report["transcript_summary"]["collar 0"]["der"] <= 0.40
    assert "word-speaker error" in result.stdout
    # --words scores a transcript's speakers, so it needs --diarization.
    alone = CliRunner().invoke(app, ["eval", manifest, "--words"])
    assert alone.exit_code == 2 and "--diarization" in alone.output
    # A bad decoding option is a message and exit 1, with --words or without.
    for extra in (["--diarization", "--words"], []):
        bad = CliRunner().invoke(app, ["eval", manifest, *extra, "--beam-size", "0"])
        assert bad.exit_code == 1 and "beam_size must be between" in bad.output
        assert bad.exception is None or isinstance(bad.exception, SystemExit)
