"""What an analyst looks at: MRI heat-map overlays, a per-frame score timeline, ``report.html``.

Everything here reads plain values (uint8 images, float MRIs, the ``results.json`` dictionary
written by :mod:`mrigan.app.analysis`), so a report can be re-rendered from a saved analysis without
re-running any model.

Two choices matter for forensic honesty:

* the heat map uses a **fixed** scale (MRI value 0 -> transparent, ``vmax`` -> full colour), never
  a per-image normalisation, which would paint the faint noise of a clean face as hot as a real
  blending seam;
* ``report.html`` is one self-contained file: every image it shows is embedded as a data URI, so it
  can be archived with a case or mailed without losing pictures; links to the full-resolution
  per-face files next to it are relative.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrigan.app.report_card import CARD_CSS, card_html, verdict_warning_html
from mrigan.fileio import atomic_save_image, atomic_write_bytes, atomic_write_text
from mrigan.perceptual import mri_to_uint8

#: Default top of the heat scale: an MRI value (1 - SSIM) of 0.5 shows at full colour.
DEFAULT_VMAX = 0.5

#: Colours of the verdict labels (background, text).
_VERDICT_STYLE = {"fake": ("#b3261e", "#ffffff"), "real": ("#1e6b35", "#ffffff")}


# ----------------------------------------------------------------------------- images


def _colormap_lut(name: str = "inferno") -> np.ndarray:
    """A 256x3 uint8 lookup table from a matplotlib colormap (perceptually uniform by default)."""
    import matplotlib

    cmap = matplotlib.colormaps[name]
    return np.clip(np.rint(cmap(np.linspace(0.0, 1.0, 256))[:, :3] * 255), 0, 255).astype(np.uint8)


def mri_intensity(mri: np.ndarray) -> np.ndarray:
    """HxW float32 in [0, 1]: the channel mean of an HxWx3 MRI (or the map itself if HxW).

    A uint8 MRI (as read back from its PNG) is rescaled by 1/255.
    """
    arr = np.asarray(mri)
    arr = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
    if arr.ndim == 3:
        arr = arr.mean(axis=2)
    if arr.ndim != 2:
        raise ValueError(f"expected an HxW or HxWxC MRI, got shape {np.shape(mri)}")
    return np.clip(arr, 0.0, 1.0)


def heat_map(mri: np.ndarray, vmax: float = DEFAULT_VMAX, cmap: str = "inferno") -> np.ndarray:
    """The MRI as an RGB uint8 heat map on the fixed scale [0, vmax]."""
    if vmax <= 0:
        raise ValueError(f"vmax must be > 0, got {vmax}")
    level = np.clip(mri_intensity(mri) / vmax, 0.0, 1.0)
    return _colormap_lut(cmap)[np.rint(level * 255).astype(np.intp)]


def overlay(face: np.ndarray, mri: np.ndarray, vmax: float = DEFAULT_VMAX,
            max_alpha: float = 0.8, cmap: str = "inferno") -> np.ndarray:
    """The MRI heat map blended on the face crop (both HxW(x3), same size), RGB uint8.

    The opacity grows with the MRI value (0 where the map is black), so clean parts of the face
    stay visible and only the suspicious regions are coloured.
    """
    face = np.asarray(face)
    if face.dtype != np.uint8 or face.ndim != 3 or face.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 face, got {face.shape} {face.dtype}")
    level = mri_intensity(mri)
    if level.shape != face.shape[:2]:
        raise ValueError(f"MRI of {level.shape} does not match the face of {face.shape[:2]}")
    alpha = (max_alpha * np.clip(level / vmax, 0.0, 1.0))[..., None]
    heat = heat_map(level, vmax, cmap).astype(np.float32)
    out = (1.0 - alpha) * face.astype(np.float32) + alpha * heat
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def draw_boxes(frame: np.ndarray, boxes: Sequence[Sequence[float]], labels: Sequence[str],
               highlight: int | None = None, max_side: int = 480) -> np.ndarray:
    """A downscaled copy of ``frame`` (RGB uint8) with labelled face boxes; ``highlight`` in red."""
    import cv2

    h, w = frame.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    img = cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))),
                     interpolation=cv2.INTER_AREA) if scale < 1 else frame.copy()
    thick = max(2, round(max(img.shape[:2]) / 240))
    for i, (box, label) in enumerate(zip(boxes, labels, strict=True)):
        x0, y0, x1, y1 = (int(round(v * scale)) for v in box[:4])
        colour = (230, 40, 40) if i == highlight else (250, 210, 40)
        cv2.rectangle(img, (x0, y0), (x1, y1), colour, thick)
        cv2.putText(img, label, (x0, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thick, colour, thick, cv2.LINE_AA)
    return np.ascontiguousarray(img)


def save_face_files(face: np.ndarray, mri: np.ndarray, paths: Mapping[str, Path],
                    vmax: float = DEFAULT_VMAX) -> None:
    """Write the face crop, its MRI (as the [0,1]->uint8 PNG) and the overlay to ``paths``."""

    atomic_save_image(paths["face"], face)
    atomic_save_image(paths["mri"], mri_to_uint8(mri))
    atomic_save_image(paths["overlay"], overlay(face, mri, vmax))


# ----------------------------------------------------------------------------- timeline


def timeline_png(path: str | os.PathLike, faces: Iterable[Mapping[str, Any]], *,
                 threshold: float | None, score_source: str, fps: float | None = None,
                 title: str = "") -> Path:
    """Per-frame scores of every face track as a PNG.

    ``faces``: dicts with ``frame``, ``track``, ``mri_mean`` and optionally ``fake_probability``.
    The top panel shows each track's mean MRI; a second panel shows the detector's fake
    probability when there is one. The verdict threshold is drawn on the panel whose score
    decides the verdict (``score_source``: ``mri_mean`` or ``detector``). ``title`` is drawn as
    plain text (``$`` in a file name is not mathtext).
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # every string (a file name such as "b_$x^$.mp4", track labels) is drawn as plain text,
    # never parsed as mathtext
    with matplotlib.rc_context({"text.parse_math": False}):
        rows = sorted(faces, key=lambda f: (f["track"], f["frame"]))
        has_prob = any(f.get("fake_probability") is not None for f in rows)
        panels = [("mri_mean", "mean MRI (1 - SSIM)")]
        if has_prob:
            panels.append(("fake_probability", "detector P(fake)"))
        fig = Figure(figsize=(9, 2.4 * len(panels) + 0.6), dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
        tracks = sorted({f["track"] for f in rows})
        for ax, (key, label) in zip(axes, panels, strict=True):
            for t in tracks:
                pts = [(f["frame"], f[key]) for f in rows if f["track"] == t and f.get(key) is not None]
                if pts:
                    xs, ys = zip(*pts, strict=True)
                    ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, label=f"track {t}")
            source_key = "fake_probability" if score_source == "detector" else "mri_mean"
            if threshold is not None and key == source_key:
                ax.axhline(threshold, color="#b3261e", linestyle="--", linewidth=1,
                           label=f"face threshold {threshold:g}")
            ax.set_ylabel(label)
            ax.set_ylim(bottom=0)
            if key == "fake_probability":
                ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
            ax.legend(loc="upper right", fontsize=7, ncol=min(4, len(tracks) + 1))
        axes[-1].set_xlabel("frame index")
        if fps:
            sec = axes[0].secondary_xaxis("top", functions=(lambda x: x / fps, lambda s: s * fps))
            sec.set_xlabel("seconds")
        if title:
            fig.suptitle(title, fontsize=10)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


# ----------------------------------------------------------------------------- report.html


def _data_uri(path: Path) -> str | None:
    if not path.is_file():
        return None
    mime = "image/jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "image/png"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _img(root: Path, rel: str | None, alt: str, cls: str = "") -> str:
    """An embedded <img> (data URI) linking to the file beside the report; '' if missing."""
    if not rel:
        return ""
    uri = _data_uri(root / rel)
    if uri is None:
        return f'<span class="missing">missing: {html.escape(rel)}</span>'
    return (f'<a href="{html.escape(rel)}"><img class="{cls}" src="{uri}" '
            f'alt="{html.escape(alt)}" title="{html.escape(alt)}"></a>')


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _verdict_html(verdict: Mapping[str, Any]) -> str:
    label = verdict["label"]
    bg, fg = _VERDICT_STYLE.get(label, ("#555", "#fff"))
    th = verdict.get("thresholds", {})
    explain = html.escape(verdict.get("explanation") or
                          f"rule {verdict.get('rule')}, thresholds {th}")
    return (f'<div class="verdict" data-verdict="{html.escape(label)}">'
            f'<span class="badge" style="background:{bg};color:{fg}">{html.escape(label.upper())}</span>'
            f'<span class="vscore">score {_fmt(verdict.get("score"))}</span>'
            f'<div class="vexplain">{explain}; {verdict.get("faces", 0)} faces</div></div>')


def _worst_faces(entry: Mapping[str, Any], k: int) -> list[dict[str, Any]]:
    faces = [dict(face, frame=fr["index"], time=fr.get("time"), thumbnail=fr.get("thumbnail"))
             for fr in entry.get("frames", []) for face in fr.get("faces", [])]
    faces.sort(key=lambda f: f["score"], reverse=True)
    return faces[:k]


def _coverage_html(entry: Mapping[str, Any], low: float | None) -> str:
    """The low-coverage warning shown beside the verdict (``report.low_coverage``)."""
    cov = entry.get("face_coverage")
    if low is None or cov is None or cov >= low:
        return ""
    second = sum(f.get("detection_pass") == 2 for fr in entry.get("frames", [])
                 for f in fr.get("faces", []))
    text = (f"Low face coverage: faces were found in {cov:.0%} of the sampled frames (warning "
            f"under {low:.0%}); the verdict rests on few frames.")
    if entry.get("second_pass"):
        text += f" The permissive second detection pass ran and found {second} of the faces."
    return f'<p class="warning coverage" data-coverage="{cov:.4f}">{html.escape(text)}</p>'


def _input_section(root: Path, entry: Mapping[str, Any], worst_k: int,
                   low_coverage: float | None = None, generator: Mapping | None = None) -> str:
    path = html.escape(entry["path"])
    if entry["status"] != "analysed":
        return ""
    parts = [f'<section class="input" id="{html.escape(entry["dir"])}">',
             f'<h2>{path}</h2>', _verdict_html(entry["verdict"]),
             verdict_warning_html(generator or {}, entry["verdict"]),
             _coverage_html(entry, low_coverage)]
    meta = [f'{entry.get("kind")}', f'{entry.get("frames_read", 0)} frames analysed',
            f'{entry.get("faces", 0)} faces in {len(entry.get("tracks", []))} track(s)']
    if entry.get("fps"):
        meta.append(f'{entry["fps"]:.2f} fps')
    if entry.get("width"):
        meta.append(f'{entry["width"]}x{entry["height"]} px')
    parts.append(f'<p class="meta">{" · ".join(html.escape(m) for m in meta)}<br>'
                 f'sha256 <code>{html.escape(entry.get("sha256") or "")}</code> · '
                 f'files: <a href="{html.escape(entry["dir"])}/">{html.escape(entry["dir"])}/</a></p>')
    for w in entry.get("warnings", []):
        parts.append(f'<p class="warning">{html.escape(w)}</p>')
    if entry.get("timeline"):
        parts.append("<h3>Timeline</h3>")
        parts.append(_img(root, entry["timeline"], f"score timeline of {entry['path']}", "timeline"))
    rows = []
    for t in entry.get("tracks", []):
        rows.append(f'<tr><td>{t["id"]}</td><td>{t["faces"]}</td>'
                    f'<td>{t["first_frame"]}–{t["last_frame"]}</td>'
                    f'<td>{_fmt(t["mri_mean"])}</td><td>{_fmt(t["score_max"])}</td>'
                    f'<td>{_fmt(t.get("fake_probability_mean"))}</td></tr>')
    if rows:
        parts.append('<h3>Face tracks</h3><table class="tracks"><tr><th>track</th><th>faces</th>'
                     '<th>frames</th><th>mean MRI</th><th>max face score</th>'
                     '<th>mean P(fake)</th></tr>' + "".join(rows) + "</table>")
    worst = _worst_faces(entry, worst_k)
    if worst:
        parts.append(f'<h3>Most suspicious faces (top {len(worst)} by face score)</h3>'
                     '<div class="worst">')
        for f in worst:
            files = f.get("files", {})
            when = f'frame {f["frame"]}' + (f' ({f["time"]:.2f} s)' if f.get("time") is not None else "")
            caption = (f'{when} · track {f["track"]} · score {_fmt(f["score"])} · '
                       f'mean MRI {_fmt(f["mri"]["mean"])} · p99 {_fmt(f["mri"]["p99"])}')
            if f.get("fake_probability") is not None:
                caption += f' · P(fake) {_fmt(f["fake_probability"])}'
            cells = [("frame", _img(root, f.get("thumbnail"), f"{when}: frame with face boxes", "frame")),
                     ("face crop", _img(root, files.get("face"), f"{when}: face crop", "face")),
                     ("MRI", _img(root, files.get("mri"), f"{when}: MRI", "face")),
                     ("overlay", _img(root, files.get("overlay"), f"{when}: MRI overlay", "face"))]
            if files.get("gradcam"):
                cells.append(("Grad-CAM", _img(root, files["gradcam"], f"{when}: detector Grad-CAM", "face")))
            if files.get("lime"):
                cells.append(("LIME", _img(root, files["lime"],
                                           f"{when}: detector LIME (red: towards fake, green: "
                                           "towards real)", "face")))
            parts.append('<figure class="face">' + "".join(
                f'<div class="cell"><div class="lab">{lab}</div>{c}</div>' for lab, c in cells if c) +
                f'<figcaption>{html.escape(caption)}</figcaption></figure>')
        parts.append("</div>")
    parts.append("</section>")
    return "\n".join(parts)


_CSS = """
body{font-family:'DejaVu Sans',Arial,sans-serif;margin:24px;color:#1b1b1b;max-width:1200px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;word-break:break-all;margin:0 0 8px}
h3{font-size:14px;margin:16px 0 6px;color:#333}
.summary{background:#f3f3f3;padding:10px 14px;border-radius:6px}
.about{font-size:13px;color:#444}
section.input{border:1px solid #ccc;border-radius:8px;padding:14px 18px;margin:18px 0}
.verdict{margin:6px 0 10px}
.badge{font-weight:bold;font-size:20px;padding:4px 14px;border-radius:5px;letter-spacing:1px}
.vscore{margin-left:12px;font-size:15px} .vexplain{font-size:13px;color:#444;margin-top:6px}
.meta{font-size:12px;color:#555} .warning{color:#8a5300;font-size:13px}
img.timeline{max-width:100%;border:1px solid #ddd}
.worst{display:flex;flex-wrap:wrap;gap:14px}
figure.face{margin:0;border:1px solid #ddd;padding:6px;border-radius:6px;background:#fafafa}
figure.face .cell{display:inline-block;margin-right:4px;vertical-align:top}
.lab{font-size:11px;color:#666}
figure.face img{height:150px;image-rendering:pixelated}
figure.face img.frame{image-rendering:auto}
figcaption{font-size:12px;color:#333;margin-top:4px}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
.legend{display:inline-block;width:220px;height:12px;vertical-align:middle;border:1px solid #999}
table.overview td:first-child,table.overview td:last-child{text-align:left;word-break:break-all}
table.overview{margin:12px 0;width:100%} tr.not-analysed{color:#8a5300}
table.overview td:nth-child(2){text-align:center} table.overview th{text-align:left}
.small-badge{font-weight:bold;padding:1px 8px;border-radius:4px;font-size:12px}
.missing{color:#b3261e;font-size:12px}
"""


def _overview(inputs: Sequence[Mapping[str, Any]]) -> str:
    """One row per input: verdict (or why it was not analysed), score, faces; links to sections."""
    rows = []
    for e in inputs:
        path = html.escape(e["path"])
        if e["status"] == "analysed":
            v = e["verdict"]
            bg, fg = _VERDICT_STYLE.get(v["label"], ("#555", "#fff"))
            rows.append(f'<tr><td><a href="#{html.escape(e["dir"])}">{path}</a></td>'
                        f'<td><span class="small-badge" style="background:{bg};color:{fg}">'
                        f'{html.escape(v["label"].upper())}</span></td>'
                        f'<td>{_fmt(v["score"])}</td><td>{e.get("faces", 0)}</td><td></td></tr>')
        else:
            rows.append(f'<tr class="not-analysed"><td>{path}</td>'
                        f'<td>not analysed: {html.escape(e["status"])}</td><td></td><td>'
                        f'{e.get("faces", 0)}</td><td>{html.escape(e.get("reason") or "")}</td></tr>')
    return ('<table class="overview" id="overview"><tr><th>input</th><th>verdict</th>'
            '<th>score</th><th>faces</th><th>note</th></tr>' + "".join(rows) + "</table>")


def _legend(vmax: float) -> str:
    stops = ", ".join(f"rgb({r},{g},{b})" for r, g, b in _colormap_lut()[::32].tolist())
    return (f'<span>0</span> <span class="legend" style="background:linear-gradient(to right, '
            f'{stops})"></span> <span>≥ {vmax:g}</span>')


def _compute_note(compute: Mapping[str, Any]) -> str:
    """`` Computed on cpu (AMD EPYC ..., bf16: native), precision generator fp32.``
    (results of schema 3 on; older results have no ``compute``: nothing)."""
    if not compute:
        return ""
    precision = ", ".join(f"{k} {v}" for k, v in (compute.get("precision") or {}).items())
    return (f' <span id="compute">Computed on {html.escape(str(compute.get("device", "?")))} '
            f'({html.escape(str(compute.get("hardware", "?")))}), precision '
            f'{html.escape(precision or "?")}.</span>')


def render_report(results: Mapping[str, Any], out_dir: str | os.PathLike, *,
                  worst_k: int = 6, vmax: float = DEFAULT_VMAX,
                  filename: str = "report.html") -> Path:
    """Write ``out_dir/report.html`` from an analysis' results dictionary; return its path.

    Paths in ``results`` (timeline, per-face files, thumbnails) are relative to ``out_dir``.
    """
    root = Path(out_dir)
    summary = results.get("summary", {})
    gen = results.get("generator") or {}
    det = results.get("detector") or {}
    skipped = [e for e in results.get("inputs", []) if e["status"] != "analysed"]
    counts = ", ".join(f"{k}: {v}" for k, v in summary.get("skipped", {}).items())
    verdicts = ", ".join(f"{v} {k}" for k, v in summary.get("verdicts", {}).items())
    head = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>mrigan report</title>", f"<style>{_CSS}{CARD_CSS}</style></head><body>",
        "<h1>mrigan artifact-map report</h1>",
        f'<div class="summary" id="summary">{summary.get("inputs", 0)} input(s): '
        f'<b>{summary.get("analysed", 0)} analysed</b>'
        + (f" ({html.escape(verdicts)})" if verdicts else "")
        + (f", {len(skipped)} not analysed ({html.escape(counts)})" if skipped else "")
        + f' · {summary.get("faces", 0)} faces · created {html.escape(results.get("created", ""))}'
        + "</div>",
        '<p class="about">The <b>MRI</b> is the generator\'s prediction of 1 - SSIM between this '
        "face and the real face it would have been made from: black where the face looks "
        "untouched, bright where it expects synthesis or blending artefacts. Heat scale "
        f"(fixed, not per image): {_legend(vmax)}. "
        f'Generator: <code>{html.escape(str(gen.get("path", "")))}</code> '
        f'({gen.get("image_size", "?")} px, sha256 {html.escape(str(gen.get("sha256", ""))[:16])}…)'
        + (f'; detector: <code>{html.escape(str(det.get("path", "")))}</code>' if det else
           "; no detector: faces are scored by their mean MRI")
        + ". A verdict is a screening aid to be read with the maps, not proof."
        + _compute_note(results.get("compute") or {}) + "</p>",
        card_html(gen),
    ]
    body = [_overview(results.get("inputs", []))]
    # the analysis' report.low_coverage (absent from results of older versions: no warning)
    low = ((results.get("config") or {}).get("report") or {}).get("low_coverage")
    body += [_input_section(root, e, worst_k, low, gen) for e in results.get("inputs", [])]
    text = "\n".join(head + body + ["</body></html>", ""])
    dest = root / filename
    atomic_write_text(dest, text)
    return dest
