"""Miniature CREMA-D, RAVDESS and MSP-Podcast trees in the real naming (the companion of corpus_trees.py).

Each builder writes a tiny copy of one corpus as it unpacks (docs/corpora.md) with short synthetic tones
and returns what a correct reader must find, in corpus_trees' format (`rows`, `emotion`, `gender`,
`session`, `speakers`, `utts`, `skips` as (path relative to root, line or None, reason fragment)).

    make_crema_d(root, actors=(...), bad_files=False, bad_ages=False)  # root/AudioWAV/ + VideoDemographics.csv
    make_ravdess(root, songs=True, bad_files=False)       # root/Actor_01/ .. root/Actor_24/
    make_msp_podcast(root, bad_rows=False, columns=...)   # root/Audios/ + root/Labels/labels_consensus.csv
"""

from __future__ import annotations

from pathlib import Path

from corpus_trees import _summary, _utt, _write_lines, write_empty_audio, write_garbage, write_tone

# ----------------------------------------------------------------------------- CREMA-D
CREMA_SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
CREMA_EMOTION = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral",
                 "SAD": "sad"}
# actor -> (age, sex, race, ethnicity) as VideoDemographics.csv writes them (values made up); readers give
# every clip of the actor age float(age), e.g. 51.0 for 1001
CREMA_ACTORS = {"1001": ("51", "Male", "Caucasian", "Not Hispanic"),
                "1002": ("21", "Female", "Caucasian", "Not Hispanic"),
                "1003": ("21", "Female", "Caucasian", "Not Hispanic"),
                "1004": ("42", "Female", "Caucasian", "Not Hispanic")}
_CREMA_HEADER = '"ActorID","Age","Sex","Race","Ethnicity"'
# with bad_ages: actor -> (Age cell written instead, reason fragment); the actor is kept with age None
CREMA_BAD_AGES = {"1002": ("abc", "Age 'abc': expected years"), "1003": ("", "Age '': expected years"),
                  "1004": ("150", "Age '150': expected years")}


def crema_levels(sentence: str, code: str) -> tuple[str, ...]:
    """Levels recorded per sentence and emotion: IEO ("It's eleven o'clock") at LO, MD and HI for the five
    emotions, everything else (and IEO neutral) at XX. 82 clips per actor: 14 per emotion, 12 neutral,
    which matches the release's 1,271 per emotion and 1,087 neutral (91 actors, 20 clips missing)."""
    return ("LO", "MD", "HI") if sentence == "IEO" and code != "NEU" else ("XX",)


def make_crema_d(root: Path, actors: tuple[str, ...] = ("1001", "1002", "1003"), bad_files: bool = False,
                 seconds: float = 0.05, sample_rate: int = 16000, bad_ages: bool = False) -> dict:
    """Write the CREMA-D root: 82 clips per actor in `actors` (crema_levels), VideoDemographics.csv
    listing CREMA_ACTORS (lines 2-5; the 1003 row quoted field by field), a `._` fork and a readme in
    AudioWAV/. Each utterance's expected `age` is float(CREMA_ACTORS[actor][0]).
    With bad_files: actor 1004 adds a kept clip, the kept quirk `1004_ITH_SAD_X.wav`, an empty and a
    garbage clip, and five misnamed clips; 1005 has a demographics row with Sex "Unknown" (line 6) and
    one clip; 1099 has a clip and no row. With bad_ages: the Age cells of 1002, 1003 and 1004 are
    CREMA_BAD_AGES' "abc", "" and "150" (Skips on lines 3, 4, 5); those actors keep their clips, age None."""
    root = Path(root)
    utts: dict[str, dict] = {}
    skips: list[tuple[str, int | None, str]] = []
    table = {a: (CREMA_BAD_AGES[a][0], *values[1:]) if bad_ages and a in CREMA_BAD_AGES else values
             for a, values in CREMA_ACTORS.items()}
    ages = {a: None if bad_ages and a in CREMA_BAD_AGES else float(values[0]) for a, values in CREMA_ACTORS.items()}
    i = 0
    for actor in actors:
        gender = CREMA_ACTORS[actor][1][0]
        for sentence in CREMA_SENTENCES:
            for code, emotion in CREMA_EMOTION.items():
                for level in crema_levels(sentence, code):
                    stem = f"{actor}_{sentence}_{code}_{level}"
                    path = f"AudioWAV/{stem}.wav"
                    duration = write_tone(root / path, seconds, sample_rate, emotion, gender, seed=i)
                    utts[stem] = {**_utt(path, duration, actor, gender, "", emotion, code), "age": ages[actor]}
                    i += 1
    lines = [_CREMA_HEADER] + [f'"{a}",' + ",".join(f'"{v}"' for v in values) if a == "1003"
                               else ",".join((a, *values)) for a, values in table.items()]
    if bad_ages:
        skips += [("VideoDemographics.csv", n, CREMA_BAD_AGES[a][1]) for n, a in enumerate(table, start=2)
                  if a in CREMA_BAD_AGES]
    write_garbage(root / "AudioWAV" / f"._{actors[0]}_DFA_ANG_XX.wav")
    (root / "AudioWAV" / "readme.txt").write_text("not audio\n")
    if bad_files:
        lines.append("1005,30,Unknown,Asian,Not Hispanic")
        skips.append(("VideoDemographics.csv", len(lines), "Sex 'Unknown'"))
        _crema_bad_files(root, utts, skips, seconds, sample_rate, ages["1004"])
    _write_lines(root / "VideoDemographics.csv", lines)
    return _summary(utts, skips)


def _crema_bad_files(root: Path, utts: dict, skips: list, seconds: float, sample_rate: int,
                     age: float | None) -> None:
    for stem, code in (("1004_DFA_SAD_XX", "SAD"), ("1004_ITH_SAD_X", "SAD")):
        duration = write_tone(root / f"AudioWAV/{stem}.wav", seconds, sample_rate, "sad", "F")
        utts[stem] = {**_utt(f"AudioWAV/{stem}.wav", duration, "1004", "F", "", CREMA_EMOTION[code], code),
                      "age": age}
    write_empty_audio(root / "AudioWAV/1004_DFA_ANG_XX.wav", sample_rate)
    write_garbage(root / "AudioWAV/1004_DFA_HAP_XX.wav")
    bad = {"1004_ABC_ANG_XX": "unknown sentence code 'ABC'", "1004_DFA_ANG": "expected <actor>_",
           "1004_DFA_ANG_XX": "empty audio", "1004_DFA_HAP_XX": "unreadable audio",
           "1004_IEO_ANG_ZZ": "unknown level 'ZZ'", "1004_IEO_XYZ_HI": "unknown emotion code 'XYZ'",
           "1005_DFA_NEU_XX": "actor 1005 has no usable row", "1099_DFA_ANG_XX": "actor 1099 has no usable row"}
    for stem in bad:
        if not (root / f"AudioWAV/{stem}.wav").exists():
            write_tone(root / f"AudioWAV/{stem}.wav", seconds, sample_rate)
    skips += [(f"AudioWAV/{stem}.wav", None, bad[stem]) for stem in sorted(bad, key=lambda s: s + ".wav")]


# ----------------------------------------------------------------------------- RAVDESS
RAVDESS_EMOTION = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fear",
                   "07": "disgust", "08": "surprised"}


def ravdess_speech_names(actor: int) -> list[str]:
    """The 60 audio-only speech stems of one actor: 8 emotions x 2 intensities (neutral only 01) x 2
    statements x 2 repetitions."""
    return [f"03-01-{e}-{i}-{s}-{r}-{actor:02d}" for e in RAVDESS_EMOTION for i in ("01", "02")
            if not (e == "01" and i == "02") for s in ("01", "02") for r in ("01", "02")]


def make_ravdess(root: Path, songs: bool = True, bad_files: bool = False, seconds: float = 0.05,
                 sample_rate: int = 16000) -> dict:
    """Write Actor_01/ .. Actor_24/ with all 1,440 speech files. With songs, actors 01 and 02 also get the
    song archive's files for emotions 01..06 (normal intensity, statement 01, repetition 01): 12 Skips
    "song, not speech". With bad_files, Actor_03/ gains a video-only .wav, an AV .mp4 (ignored), a `._`
    fork (ignored) and five misnamed .wav files, and a folder Actor_5/ one file (all Skips)."""
    root = Path(root)
    utts: dict[str, dict] = {}
    skips: list[tuple[str, int | None, str]] = []
    for actor in range(1, 25):
        gender = "M" if actor % 2 else "F"
        for k, stem in enumerate(ravdess_speech_names(actor)):
            path = f"Actor_{actor:02d}/{stem}.wav"
            emotion = RAVDESS_EMOTION[stem[6:8]]
            duration = write_tone(root / path, seconds, sample_rate, emotion, gender, seed=k)
            utts[stem] = _utt(path, duration, f"Actor_{actor:02d}", gender, "", emotion, stem[6:8])
    if songs:
        for actor in (1, 2):
            for e in ("01", "02", "03", "04", "05", "06"):
                path = f"Actor_{actor:02d}/03-02-{e}-01-01-01-{actor:02d}.wav"
                write_tone(root / path, seconds, sample_rate)
                skips.append((path, None, "song, not speech"))
    if bad_files:
        bad = {"02-01-05-01-01-01-03": "modality 02 (video-only), not audio-only",
               "03-01-09-01-01-01-03": "unknown emotion 09", "03-01-01-02-01-01-03": "no strong intensity",
               "03-01-05-01-01-01-04": "actor 04 in the file name but the file is in Actor_03/",
               "03-01-05-01": "expected MM-VV-EE-II-SS-RR-NN.wav",
               "03-01-05-01-03-01-03": "statement 03 and repetition 01 must be 01 or 02"}
        for stem in bad:
            write_tone(root / f"Actor_03/{stem}.wav", seconds, sample_rate)
        write_garbage(root / "Actor_03/01-01-05-01-01-01-03.mp4")
        write_garbage(root / "Actor_03/._03-01-05-01-01-01-03.wav")
        write_tone(root / "Actor_5/03-01-05-01-01-01-05.wav", seconds, sample_rate)
        skips += [(f"Actor_03/{stem}.wav", None, bad[stem]) for stem in bad]
        skips.append(("Actor_5/03-01-05-01-01-01-05.wav", None, "is not Actor_NN/"))
    skips.sort(key=lambda s: (s[0].split("/")[0], s[0].split("/")[1]))  # the reader's folder/file order
    return _summary(utts, skips)


# ----------------------------------------------------------------------------- MSP-Podcast
MSP_PODCAST_COLUMNS = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set")
MSP_PODCAST_EMOTION = {"A": "angry", "S": "sad", "H": "happy", "U": "surprised", "F": "fear", "D": "disgust",
                       "C": "contempt", "N": "neutral", "O": "other", "X": ""}
MSP_PODCAST_SPLITS = ("Train", "Development", "Test1", "Test2")
_SPEAKER_GENDER = {"100": "Female", "101": "Male", "102": "Female"}


def msp_podcast_row(i: int) -> dict[str, str]:
    """Good row i (0..19) as the label file writes it: EmoClass "ASHUFDCNOX"[i % 10], Split_Set
    MSP_PODCAST_SPLITS[i % 4], SpkrID 100 + i % 3 ("Unknown" with Gender "Unknown" for i == 7),
    EmoAct 1 + 0.25 i, EmoVal 7 - 0.25 i, EmoDom 4.5 (empty for i == 5)."""
    speaker = "Unknown" if i == 7 else str(100 + i % 3)
    return {"FileName": f"MSP-PODCAST_{i // 5 + 1:04d}_{i % 5 + 1:04d}.wav",
            "EmoClass": "ASHUFDCNOX"[i % 10], "EmoAct": f"{1 + 0.25 * i}", "EmoVal": f"{7 - 0.25 * i}",
            "EmoDom": "" if i == 5 else "4.5", "SpkrID": speaker,
            "Gender": _SPEAKER_GENDER.get(speaker, "Unknown"), "Split_Set": MSP_PODCAST_SPLITS[i % 4]}


def make_msp_podcast(root: Path, bad_rows: bool = False, columns: tuple[str, ...] = MSP_PODCAST_COLUMNS,
                     label_name: str = "labels_consensus.csv", seconds: float = 0.2,
                     sample_rate: int = 16000) -> dict:
    """Write Audios/ and Labels/<label_name>: header (line 1) in the order `columns` (any extra name gets
    the cell "x"), rows 0..19 (msp_podcast_row) on lines 2..21, then on line 22 a row with empty EmoClass,
    values, SpkrID "Unknown" and Split_Set Test3 (kept, no label). With bad_rows, lines 23..29: a short
    row, EmoVal "abc", EmoAct 9.0, EmoClass "Z", audio missing, empty audio, a repeat of line 2."""
    root = Path(root)
    utts: dict[str, dict] = {}
    rows = [msp_podcast_row(i) for i in range(20)]
    rows.append({"FileName": "MSP-PODCAST_0100_0001.wav", "EmoClass": "", "EmoAct": "", "EmoVal": "",
                 "EmoDom": "", "SpkrID": "Unknown", "Gender": "Unknown", "Split_Set": "Test3"})
    for i, row in enumerate(rows):
        letter, speaker = row["EmoClass"], row["SpkrID"]
        emotion = MSP_PODCAST_EMOTION.get(letter, "")
        gender = {"Female": "F", "Male": "M"}.get(row["Gender"], "")
        path = f"Audios/{row['FileName']}"
        duration = write_tone(root / path, seconds + 0.05 * (i % 3), sample_rate, emotion, gender or "F", i)
        values = [float(row[c]) if row[c] else None for c in ("EmoVal", "EmoAct", "EmoDom")]
        utts[row["FileName"][:-4]] = _utt(path, duration, "" if speaker == "Unknown" else speaker, gender,
                                          row["Split_Set"], emotion, letter, *values)
    skips: list[tuple[str, int | None, str]] = []
    label = f"Labels/{label_name}"
    lines = [",".join(columns)] + [",".join(row.get(c, "x") for c in columns) for row in rows]
    if bad_rows:
        bad = [({"FileName": "MSP-PODCAST_0200_0001.wav"}, "expected"),
               ({"FileName": "MSP-PODCAST_0200_0002.wav", "EmoVal": "abc"}, "EmoVal 'abc': expected a number"),
               ({"FileName": "MSP-PODCAST_0200_0003.wav", "EmoAct": "9.0"}, "EmoAct '9.0': outside"),
               ({"FileName": "MSP-PODCAST_0200_0004.wav", "EmoClass": "Z"}, "EmoClass 'Z'"),
               ({"FileName": "MSP-PODCAST_0200_0005.wav"}, "audio file not found"),
               ({"FileName": "MSP-PODCAST_0200_0006.wav"}, "empty audio"),
               (rows[0], "duplicate utterance id")]
        for j, (change, reason) in enumerate(bad):
            row = {**msp_podcast_row(0), **change}
            if j < 4:  # 4: no audio, 5: written empty below, 6: the audio of line 2
                write_tone(root / f"Audios/{row['FileName']}", seconds, sample_rate)
            cells = [row.get(c, "x") for c in columns]
            lines.append(",".join(cells[:-1] if j == 0 else cells))
            skips.append((label, len(lines), reason))
        write_empty_audio(root / "Audios/MSP-PODCAST_0200_0006.wav", sample_rate)
    _write_lines(root / label, lines + [""])
    return _summary(utts, skips)
