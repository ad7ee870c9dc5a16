"""The JSON Schema (draft 2020-12) of ``results.json``, and the skip reasons it allows."""

from __future__ import annotations

from typing import Any

#: Why an input was not analysed (the keys of ``summary["skipped"]``). ``error``: anything else
#: that went wrong with one input (its traceback is in ``errors.log``), including a generator or
#: detector that returned non-finite values for its faces.
SKIP_REASONS = ("missing", "unreadable", "no_face", "error")

RESULTS_SCHEMA_VERSION = 3  # 2: face detection_pass, input face_coverage / second_pass;
# 3: compute (device, hardware, precision)

_NUM: dict[str, Any] = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_STR_OR_NULL = {"type": ["string", "null"]}
_INT = {"type": "integer", "minimum": 0}

#: JSON Schema (draft 2020-12) of ``results.json``.
RESULTS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "mrigan analyze results",
    "type": "object",
    "required": ["schema_version", "tool", "created", "compute", "generator", "detector",
                 "config", "summary", "inputs"],
    "properties": {
        "schema_version": {"const": RESULTS_SCHEMA_VERSION},
        "tool": {"type": "object", "required": ["name", "version"]},
        "created": {"type": "string"},
        "compute": {
            "type": "object", "required": ["device", "hardware", "precision"],
            "properties": {"device": {"type": "string"}, "hardware": {"type": "string"},
                           "precision": {"type": "object", "required": ["generator"],
                                         "additionalProperties": {"enum": ["fp32", "bf16",
                                                                           "fp16"]}}},
        },
        "generator": {"type": "object", "required": ["path", "image_size"]},
        "detector": {"type": ["object", "null"]},
        "config": {"type": "object", "required": ["frames", "faces", "verdict"]},
        "summary": {
            "type": "object",
            "required": ["inputs", "analysed", "skipped", "faces", "verdicts"],
            "properties": {"inputs": _INT, "analysed": _INT, "faces": _INT,
                           "skipped": {"type": "object",
                                       "propertyNames": {"enum": list(SKIP_REASONS)},
                                       "additionalProperties": _INT},
                           "verdicts": {"type": "object",
                                        "propertyNames": {"enum": ["fake", "real"]},
                                        "additionalProperties": _INT}},
        },
        "inputs": {"type": "array", "items": {"$ref": "#/$defs/input"}},
    },
    "$defs": {
        "input": {
            "type": "object",
            "required": ["path", "kind", "status", "reason", "frames", "tracks", "verdict"],
            "properties": {
                "path": {"type": "string"},
                "kind": {"enum": ["video", "image"]},
                "status": {"enum": ["analysed", *SKIP_REASONS]},
                "reason": _STR_OR_NULL, "dir": _STR_OR_NULL, "sha256": _STR_OR_NULL,
                "fps": _NUM_OR_NULL, "frames_read": _INT, "faces": _INT,
                "face_coverage": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                "second_pass": {"type": "boolean"},
                "timeline": _STR_OR_NULL,
                "frames": {"type": "array", "items": {"$ref": "#/$defs/frame"}},
                "tracks": {"type": "array", "items": {"$ref": "#/$defs/track"}},
                "verdict": {"oneOf": [{"type": "null"}, {"$ref": "#/$defs/verdict"}]},
                "warnings": {"type": "array", "items": {"type": "string"}},
            },
            "if": {"properties": {"status": {"const": "analysed"}}},
            "then": {"properties": {"verdict": {"$ref": "#/$defs/verdict"},
                                    "frames": {"minItems": 1}}},
            "else": {"properties": {"reason": {"type": "string"}, "verdict": {"type": "null"}}},
        },
        "frame": {
            "type": "object", "required": ["index", "time", "faces"],
            "properties": {"index": _INT, "time": _NUM_OR_NULL, "thumbnail": _STR_OR_NULL,
                           "faces": {"type": "array", "items": {"$ref": "#/$defs/face"}}},
        },
        "face": {
            "type": "object",
            "required": ["frame", "track", "box", "detection_score", "detection_pass", "mri",
                         "fake_probability", "score", "files"],
            "properties": {
                "frame": _INT, "track": _INT,
                "box": {"type": "array", "items": _NUM, "minItems": 4, "maxItems": 4},
                "detection_score": {"type": "number", "minimum": 0, "maximum": 1},
                "detection_pass": {"enum": [1, 2]},
                "mri": {"type": "object", "required": ["mean", "p50", "p90", "p99", "max"],
                        "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1}},
                "fake_probability": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                "score": _NUM,
                "files": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "track": {
            "type": "object",
            "required": ["id", "faces", "first_frame", "last_frame", "mri_mean", "score_max"],
            "properties": {"id": _INT, "faces": {"type": "integer", "minimum": 1},
                           "first_frame": _INT, "last_frame": _INT, "mri_mean": _NUM,
                           "score_mean": _NUM, "score_max": _NUM,
                           "fake_probability_mean": _NUM_OR_NULL},
        },
        "verdict": {
            "type": "object",
            "required": ["label", "score", "rule", "score_source", "thresholds", "faces"],
            "properties": {"label": {"enum": ["fake", "real"]}, "score": _NUM,
                           "rule": {"type": "string"},
                           "score_source": {"enum": ["detector", "mri_mean"]},
                           "thresholds": {"type": "object", "additionalProperties": _NUM},
                           "faces": {"type": "integer", "minimum": 1},
                           "explanation": {"type": "string"}},
        },
    },
}


