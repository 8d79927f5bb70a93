"""Words to speakers: overlap with turns, and sentences not cut by a word or two."""

from __future__ import annotations

from hark.pipeline.diarization.assign import TurnIndex, assign_speakers, word_speakers
from hark.pipeline.diarization.base import Diarization, SpeakerTurn
from hark.pipeline.transcript import Segment, Word, join_words


def words_of(text: str, start: float, step: float = 0.3) -> list[Word]:
    return [Word(w, start + i * step, start + i * step + 0.25)
            for i, w in enumerate(text.split())]


def test_a_word_goes_to_the_speaker_covering_most_of_it() -> None:
    index = TurnIndex([SpeakerTurn(0.0, 1.1, "A"), SpeakerTurn(1.1, 3.0, "B")])
    # 1.0-1.4 lies 0.1 s in A's turn and 0.3 s in B's.
    assert index.speaker_over(1.0, 1.4) == "B"
    # Nobody talks at 5 s: the nearest turn's speaker.
    assert index.speaker_over(4.9, 5.1) == "B"


def test_a_long_turn_covers_words_long_after_it_starts() -> None:
    index = TurnIndex([SpeakerTurn(0.0, 30.0, "A"), SpeakerTurn(10.0, 10.5, "B"),
                       SpeakerTurn(11.0, 11.5, "B")])
    assert index.talk_over(20.0, 20.5) == {"A": 0.5}


def test_the_last_words_of_a_sentence_stay_with_its_speaker() -> None:
    # A says "We went to the market and then we came home." and B answers. The turn
    # change is put 0.5 s early, inside A's last two words.
    words = words_of("We went to the market and then we came home.", 0.0)
    words += words_of("Did you buy anything?", 3.2)
    turns = [SpeakerTurn(0.0, 2.5, "A"), SpeakerTurn(2.5, 4.5, "B")]
    speakers = word_speakers(words, TurnIndex(turns))
    assert speakers[:10] == ["A"] * 10
    assert speakers[10:] == ["B"] * 4


def test_the_first_word_of_a_sentence_goes_with_the_rest_of_it() -> None:
    words = words_of("Yes it is.", 0.0) + words_of("So I don't hear that at all.", 1.0)
    # B's turn starts late, after "So".
    turns = [SpeakerTurn(0.0, 1.2, "A"), SpeakerTurn(1.2, 3.5, "B")]
    speakers = word_speakers(words, TurnIndex(turns))
    assert speakers == ["A"] * 3 + ["B"] * 7


def test_an_interruption_of_several_words_keeps_its_speaker() -> None:
    # B cuts in for three words in the middle of A's sentence.
    words = words_of("I was saying that wait what do you mean by that exactly?", 0.0)
    turns = [SpeakerTurn(0.0, 1.15, "A"), SpeakerTurn(1.15, 2.05, "B"),
             SpeakerTurn(2.05, 4.0, "A")]
    speakers = word_speakers(words, TurnIndex(turns))
    assert speakers[4:7] == ["B"] * 3
    assert speakers[:4] == ["A"] * 4 and speakers[7:] == ["A"] * 5


def test_unpunctuated_words_follow_the_turns() -> None:
    words = words_of("one two three four five six", 0.0)
    turns = [SpeakerTurn(0.0, 1.15, "A"), SpeakerTurn(1.15, 2.0, "B")]
    assert word_speakers(words, TurnIndex(turns)) == ["A"] * 4 + ["B"] * 2


def test_segments_split_where_the_speaker_changes_and_keep_word_spacing() -> None:
    words = words_of("Hello there. It is Kenobi 's ship.", 0.0)
    words[5].leading_space = False
    segment = Segment(0, 0.0, words[-1].end, join_words(words), words=words)
    turns = [SpeakerTurn(0.0, 0.55, "A"), SpeakerTurn(0.55, 2.5, "B")]
    out = assign_speakers([segment], Diarization(turns))
    assert [(s.id, s.speaker, s.text) for s in out] == [
        (0, "A", "Hello there."), (1, "B", "It is Kenobi's ship.")]
    assert all(w.speaker == s.speaker for s in out for w in s.words)
