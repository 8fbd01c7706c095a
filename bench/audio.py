"""Speech throughput: synthesis (piper) and transcription (faster-whisper) through a deployment on
Ray vs the same libraries called directly, in one run.

The built-in voice (``builtin:piper-joe``) and the built-in Whisper tiny.en, the 10 English
sentences of ``tests/data/speech_sentences.txt`` (``--rounds`` times), 2 CPU threads on both sides:
- direct: ``piper.PiperVoice.synthesize_wav`` and ``faster_whisper.WhisperModel.transcribe`` in
  this process;
- deployment: ``ByzerLLM.speech`` / ``ByzerLLM.transcribe`` on a 1-worker deployment of each.
Throughput is the real-time factor: seconds of audio made or read per second of wall time (higher
is faster). The deployment's transcription also checks the words: word error rate over all
sentences. Target (issue 15): deployment >= 0.9x of direct for both.

    .venv/bin/python bench/audio.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import io
import time
import wave
from pathlib import Path

from _common import print_table, ray_cluster, write_result

import byzerllm
from byzerllm.audio import decode, word_error_rate
from byzerllm.backends.models import resolve_model_path

SENTENCES = (Path(__file__).resolve().parent.parent / "tests/data/speech_sentences.txt").read_text().splitlines()
THREADS = 2
SAMPLE_RATE = 16000


def seconds_of(wav: bytes) -> float:
    with wave.open(io.BytesIO(wav)) as w:
        return w.getnframes() / w.getframerate()


def direct(texts: list[str]) -> tuple[dict, list[bytes]]:
    from faster_whisper import WhisperModel
    from piper import PiperVoice

    voice = PiperVoice.load(resolve_model_path("builtin:piper-joe"))
    start = time.perf_counter()
    clips = []
    for text in texts:
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            voice.synthesize_wav(text, w)
        clips.append(buf.getvalue())
    tts_wall = time.perf_counter() - start
    audio_s = sum(seconds_of(c) for c in clips)

    model = WhisperModel(
        resolve_model_path("builtin:whisper-tiny.en"), device="cpu", compute_type="int8", cpu_threads=THREADS
    )
    start = time.perf_counter()
    heard = []
    for clip in clips:
        segments, _ = model.transcribe(decode(clip, SAMPLE_RATE), language="en", word_timestamps=True, beam_size=5)
        heard.append("".join(s.text for s in segments))
    stt_wall = time.perf_counter() - start
    return {
        "audio_s": audio_s,
        "tts_wall_s": tts_wall,
        "tts_rtf": audio_s / tts_wall,
        "stt_wall_s": stt_wall,
        "stt_rtf": audio_s / stt_wall,
        "wer": word_error_rate(" ".join(texts), " ".join(heard)),
    }, clips


def deployed(texts: list[str], clips: list[bytes]) -> dict:
    llm = byzerllm.ByzerLLM()
    llm.setup_num_workers(1).setup_cpus_per_worker(0.001)
    llm.deploy("builtin:piper-joe", pretrained_model_type="custom/piper", udf_name="bench_tts", infer_params={})
    llm.deploy(
        "builtin:whisper-tiny.en",
        pretrained_model_type="custom/whisper",
        udf_name="bench_stt",
        infer_params={"cpu_threads": THREADS},
    )
    try:
        llm.speech(texts[0], model="bench_tts")  # warm both before timing
        llm.transcribe(clips[0], language="en", model="bench_stt")
        start = time.perf_counter()
        made = [llm.speech(t, response_format="wav", model="bench_tts") for t in texts]
        tts_wall = time.perf_counter() - start
        audio_s = sum(m.duration for m in made)
        start = time.perf_counter()
        heard = [llm.transcribe(c, language="en", model="bench_stt").text for c in clips]
        stt_wall = time.perf_counter() - start
        stt_audio = sum(seconds_of(c) for c in clips)
    finally:
        llm.undeploy("bench_tts")
        llm.undeploy("bench_stt")
    return {
        "audio_s": audio_s,
        "tts_wall_s": tts_wall,
        "tts_rtf": audio_s / tts_wall,
        "stt_wall_s": stt_wall,
        "stt_rtf": stt_audio / stt_wall,
        "wer": word_error_rate(" ".join(texts), " ".join(heard)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    texts = SENTENCES * args.rounds
    ours, clips = direct(texts)
    with ray_cluster():
        dep = deployed(texts, clips)
    rows = [
        ["direct", ours["tts_rtf"], ours["stt_rtf"], ours["wer"]],
        ["deployment on Ray", dep["tts_rtf"], dep["stt_rtf"], dep["wer"]],
        ["ratio", dep["tts_rtf"] / ours["tts_rtf"], dep["stt_rtf"] / ours["stt_rtf"], ""],
    ]
    print_table(
        f"speech throughput, {len(texts)} sentences ({ours['audio_s']:.1f} s of audio), real-time factor",
        ["path", "synthesis RTF", "transcription RTF", "WER"],
        rows,
    )
    write_result(
        "audio",
        {
            "sentences": len(texts),
            "threads": THREADS,
            "direct": ours,
            "deployment": dep,
            "synthesis_ratio": dep["tts_rtf"] / ours["tts_rtf"],
            "transcription_ratio": dep["stt_rtf"] / ours["stt_rtf"],
            "target": ">= 0.9x of direct for both",
        },
    )


if __name__ == "__main__":
    main()
