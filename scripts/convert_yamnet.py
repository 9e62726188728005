#!/usr/bin/env python
"""Convert YAMNet's TFLite export to safetensors for mats.encoders.yamnet (one-off; the runtime needs only torch).

    pip install tflite                      # a flatbuffer parser, pure Python (only this script needs it)
    python scripts/convert_yamnet.py --tflite ../shared/data/backbones/yamnet/yamnet.tflite \
        --classes ../shared/data/labels/audioset/yamnet_class_map.csv --out ~/.cache/mats/yamnet

    # once, with Google's runtime, the reference outputs the port is tested against (tests/test_yamnet.py)
    pip install ai-edge-litert
    python scripts/convert_yamnet.py ... --fixture tests/fixtures/yamnet_reference.safetensors

What it does: walks the graph's operators in order. The first CONV_2D is YAMNet's 3x3/2 stem; then every
DEPTHWISE_CONV_2D + CONV_2D pair is one separable block; the last FULLY_CONNECTED is the classifier (the three
before the stem are the front end's DFT and mel matrices, which the port computes exactly instead). 28 weight
tensors are int8 with scales (dynamic-range quantisation): dequantised as (int8 - zero point) x scale along the
quantised dimension, they are the model's float weights. BatchNorm is already folded into the biases. Layouts go
from TFLite's OHWI / 1HWC to torch's OIHW / C1HW.

Writes ``yamnet.safetensors`` (fp16), ``yamnet_class_map.csv``, ``LICENSE`` (Apache-2.0) and ``NOTICE``
(attribution: "YAMNet, The TensorFlow Authors, Apache-2.0; weights converted").
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

NOTICE = """YAMNet weights, converted.

YAMNet: The TensorFlow Authors, Apache-2.0 (tensorflow/models, research/audioset/yamnet; TF Hub google/yamnet/1).
Source file: its TFLite export yamnet.tflite (sha256 {sha}).
Changes: the int8 weights were dequantised (int8 x scale) and written as float32 safetensors in PyTorch layout by
mats scripts/convert_yamnet.py; nothing was retrained. The class names (yamnet_class_map.csv) are YAMNet's, from
the AudioSet ontology (Google, CC BY-SA 4.0).
"""


def _op_name(model, op) -> str:
    import tflite

    code = model.OperatorCodes(op.OpcodeIndex())
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    return names[builtin]


def _tensor(model, graph, index: int) -> np.ndarray:
    """A constant tensor as float32, dequantised when it is int8."""
    t = graph.Tensors(index)
    raw = model.Buffers(t.Buffer()).DataAsNumpy()
    dtype = {0: np.float32, 9: np.int8}.get(t.Type())
    if dtype is None:
        raise SystemExit(f"tensor {t.Name().decode()} has type {t.Type()}, not float32 or int8")
    a = np.frombuffer(raw.tobytes(), dtype=dtype).reshape(t.ShapeAsNumpy()).astype(np.float32)
    q = t.Quantization()
    if dtype is np.int8:
        scale, zero = q.ScaleAsNumpy().astype(np.float32), q.ZeroPointAsNumpy().astype(np.float32)
        shape = [1] * a.ndim
        shape[q.QuantizedDimension()] = -1  # per-channel scales broadcast along their axis (per-tensor: one)
        a = (a - zero.reshape(shape)) * scale.reshape(shape)
    return a


def read_weights(tflite_path: Path) -> dict[str, "torch.Tensor"]:
    import tflite
    import torch

    from mats.encoders.yamnet import SEPARABLE_LAYERS

    buf = tflite_path.read_bytes()
    model = tflite.Model.GetRootAsModel(buf, 0)
    graph = model.Subgraphs(0)
    produced_by_dequantize = {}  # float tensor -> the int8 constant a DEQUANTIZE op made it from
    convs, dense = [], []
    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        name = _op_name(model, op)
        ins = [int(i) for i in op.InputsAsNumpy()]
        if name == "DEQUANTIZE":
            produced_by_dequantize[int(op.OutputsAsNumpy()[0])] = ins[0]
        elif name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w = _tensor(model, graph, produced_by_dequantize.get(ins[1], ins[1]))
            convs.append((name, w, _tensor(model, graph, ins[2])))
        elif name == "FULLY_CONNECTED":
            dense.append(ins)
    expected = 1 + 2 * len(SEPARABLE_LAYERS)
    if len(convs) != expected or convs[0][0] != "CONV_2D":
        raise SystemExit(f"expected {expected} convolutions starting with the stem, found {len(convs)}: not YAMNet?")
    state = {}
    _, w, b = convs[0]
    state["conv1.weight"], state["conv1.bias"] = w.transpose(0, 3, 1, 2), b  # OHWI -> OIHW
    for i in range(len(SEPARABLE_LAYERS)):
        (dn, dw, db), (pn, pw, pb) = convs[1 + 2 * i], convs[2 + 2 * i]
        if (dn, pn) != ("DEPTHWISE_CONV_2D", "CONV_2D"):
            raise SystemExit(f"block {i}: expected depthwise + pointwise, found {dn} + {pn}")
        state[f"layers.{i}.depthwise.weight"] = dw.transpose(3, 0, 1, 2)  # 1HWC -> C1HW
        state[f"layers.{i}.depthwise.bias"] = db
        state[f"layers.{i}.pointwise.weight"] = pw.transpose(0, 3, 1, 2)
        state[f"layers.{i}.pointwise.bias"] = pb
    ins = dense[-1]  # the classifier; the front end's matmuls come first
    state["classifier.weight"] = _tensor(model, graph, ins[1])
    state["classifier.bias"] = _tensor(model, graph, ins[2])
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}


def write_fixture(tflite_path: Path, out: Path, clips: list[Path]) -> None:
    """Reference outputs of Google's interpreter for one 0.975 s window of each clip (from 1 s in, or the start)."""
    import torch
    from ai_edge_litert.interpreter import Interpreter
    from safetensors.torch import save_file

    from mats.audio import load_clip
    from mats.encoders.yamnet import PATCH_SAMPLES, SAMPLE_RATE

    interp = Interpreter(model_path=str(tflite_path), experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    outs = {d["name"]: d["index"] for d in interp.get_output_details()}
    emb_index = next(d["index"] for d in interp.get_tensor_details()
                     if d["name"] == "yamnet_frames/global_average_pooling2d/Mean")
    waves, scores, embs, mels = [], [], [], []
    for clip in clips:
        wave = load_clip(clip, target_sr=SAMPLE_RATE).waveform
        start = SAMPLE_RATE if len(wave) >= SAMPLE_RATE + PATCH_SAMPLES else 0
        window = np.zeros(PATCH_SAMPLES, np.float32)
        part = wave[start : start + PATCH_SAMPLES]
        window[: len(part)] = part
        interp.set_tensor(inp, window[None])
        interp.invoke()
        waves.append(window)
        scores.append(interp.get_tensor(outs["Identity"])[0])
        mels.append(interp.get_tensor(outs["Identity_1"]))
        embs.append(interp.get_tensor(emb_index)[0])
    stack = lambda xs: torch.from_numpy(np.stack(xs).astype(np.float32))  # noqa: E731
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({"wave": stack(waves), "scores": stack(scores), "embedding": stack(embs), "log_mel": stack(mels)},
              str(out), metadata={"clips": ",".join(c.name for c in clips), "runtime": "ai-edge-litert"})
    print(f"wrote reference outputs of {len(clips)} windows to {out}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tflite", type=Path, required=True, help="yamnet.tflite")
    p.add_argument("--classes", type=Path, required=True, help="yamnet_class_map.csv (index, mid, display_name)")
    p.add_argument("--license", type=Path, default=None, help="Apache-2.0 text (default: LICENSE beside --tflite)")
    p.add_argument("--out", type=Path, required=True, help="folder to write yamnet.safetensors and its notes to")
    p.add_argument("--fixture", type=Path, default=None,
                   help="also write the interpreter's reference outputs here (needs ai-edge-litert)")
    p.add_argument("--fixture-clips", type=Path, nargs="*",
                   default=sorted((Path(__file__).resolve().parents[1] / "assets" / "examples").glob("*.flac")))
    a = p.parse_args(argv)
    from safetensors.torch import save_file

    from mats.encoders.yamnet import Yamnet, read_class_names

    state = read_weights(a.tflite)
    sha = hashlib.sha256(a.tflite.read_bytes()).hexdigest()
    a.out.mkdir(parents=True, exist_ok=True)
    # fp16 on disk, as every encoder folder ships it: training and inference then read the very same weights
    # (fp16 moves the scores by < 0.003, about a hundredth of what the interpreter's own quantised front end
    # moves them; tests/test_yamnet.py).
    state = {k: v.half().contiguous() for k, v in state.items()}
    save_file(state, str(a.out / "yamnet.safetensors"), metadata={"format": "pt", "source_sha256": sha})
    Yamnet().load(a.out / "yamnet.safetensors")  # the port accepts exactly these tensors
    read_class_names(a.classes)  # refuses a class map that is not YAMNet's 521 names
    shutil.copyfile(a.classes, a.out / "yamnet_class_map.csv")
    shutil.copyfile(a.license or a.tflite.parent / "LICENSE", a.out / "LICENSE.yamnet")
    (a.out / "NOTICE.yamnet").write_text(NOTICE.format(sha=sha))
    n = sum(v.numel() for v in state.values())
    print(f"wrote {len(state)} tensors ({n:,} parameters) to {a.out / 'yamnet.safetensors'}")
    if a.fixture:
        write_fixture(a.tflite, a.fixture, a.fixture_clips)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
