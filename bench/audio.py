"""Speech throughput: synthesis (piper) and transcription (faster-whisper) through a deployment on
Ray vs the same libraries called directly, in one run.

The built-in voice (``builtin:piper-joe``) and the built-in Whisper tiny.en, the 10 English
sentences of ``tests/data/speech_sentences.txt`` (``--rounds`` times), 2 CPU threads on both sides:
- direct: ``piper.PiperVoice.synthesize_wav`` and ``faster_whisper.WhisperModel.transcribe`` in
  this process;
- deployment: ``ByzerLLM.speech`` / ``ByzerLLM.transcribe`` on a 1-worker deployment of each;
in alternating blocks of the 10 sentences, so both see the same load (the cluster runs throughout).
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


def measure(rounds: int) -> tuple[dict, dict]:
    """The sentences spoken, then transcribed, directly and through the deployments, in alternating
    blocks, ``rounds`` times; the cluster and both deployments exist throughout."""
    from faster_whisper import WhisperModel
    from piper import PiperVoice

    voice = PiperVoice.load(resolve_model_path("builtin:piper-joe"))
    model = WhisperModel(
        resolve_model_path("builtin:whisper-tiny.en"), device="cpu", compute_type="int8", cpu_threads=THREADS
    )

    def speak(text: str) -> bytes:
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            voice.synthesize_wav(text, w)
        return buf.getvalue()

    def hear(clip: bytes) -> str:
        segments, _ = model.transcribe(decode(clip, SAMPLE_RATE), language="en", word_timestamps=True, beam_size=5)
        return "".join(s.text for s in segments)

    llm = byzerllm.ByzerLLM()
    llm.setup_num_workers(1).setup_cpus_per_worker(0.001)
    llm.deploy("builtin:piper-joe", pretrained_model_type="custom/piper", udf_name="bench_tts", infer_params={})
    llm.deploy(
        "builtin:whisper-tiny.en",
        pretrained_model_type="custom/whisper",
        udf_name="bench_stt",
        infer_params={"cpu_threads": THREADS, "beam_size": 5},
    )
    sides = {
        "direct": {"tts": 0.0, "stt": 0.0, "audio": 0.0, "heard": []},
        "deployment": {"tts": 0.0, "stt": 0.0, "audio": 0.0, "heard": []},
    }
    try:
        hear(speak(SENTENCES[0]))  # warm both sides before timing
        llm.transcribe(llm.speech(SENTENCES[0], response_format="wav", model="bench_tts").audio, model="bench_stt")
        # blocks of one side at a time, alternating (ABAB): each engine's idle threads (onnxruntime and
        # CTranslate2 spin for a while after a call) would otherwise take CPU from the other side's call
        clips = [speak(t) for t in SENTENCES]
        for _ in range(rounds):
            start = time.perf_counter()
            for text in SENTENCES:
                sides["direct"]["audio"] += seconds_of(speak(text))
            sides["direct"]["tts"] += time.perf_counter() - start
            start = time.perf_counter()
            for text in SENTENCES:
                made = llm.speech(text, response_format="wav", model="bench_tts").audio
                sides["deployment"]["audio"] += seconds_of(made)
            sides["deployment"]["tts"] += time.perf_counter() - start
        for _ in range(rounds):
            start = time.perf_counter()
            sides["direct"]["heard"] += [hear(c) for c in clips]
            sides["direct"]["stt"] += time.perf_counter() - start
            start = time.perf_counter()
            sides["deployment"]["heard"] += [llm.transcribe(c, language="en", model="bench_stt").text for c in clips]
            sides["deployment"]["stt"] += time.perf_counter() - start
    finally:
        llm.undeploy("bench_tts")
        llm.undeploy("bench_stt")
    out = {}
    for side, v in sides.items():
        # both transcribe the direct clips; each side's synthesis RTF counts its own audio
        heard_s = sum(seconds_of(c) for c in clips) * rounds
        out[side] = {
            "audio_s": v["audio"],
            "tts_wall_s": v["tts"],
            "tts_rtf": v["audio"] / v["tts"],
            "stt_wall_s": v["stt"],
            "stt_rtf": heard_s / v["stt"],
            "wer": word_error_rate(" ".join(SENTENCES * rounds), " ".join(v["heard"])),
        }
    return out["direct"], out["deployment"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    texts = SENTENCES * args.rounds
    with ray_cluster():
        ours, dep = measure(args.rounds)
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
