"""The GAN's speed levers (issue 14): what each ``auto`` resolves to on CPU and CUDA, that the
faster implementations train the same, and the loader that spans epochs keeps exact resume.

Tests marked ``cuda`` run the trainer's CUDA path and skip on machines without CUDA."""

from __future__ import annotations

import logging
import os

import pytest
import torch
from _gan_setup import Killed, kill_at, tiny_config

import mrigan.device as device_mod
from datasets_builders.synthetic import write_synthetic_mri_df
from mrigan.checkpoint import load_checkpoint
from mrigan.config import ConfigError, load_config
from mrigan.device import adam_kwargs, resolve_precision, set_cudnn_benchmark
from mrigan.errors import MriganError
from mrigan.mri_df_format import MriDfDataset
from mrigan.train import (
    GanConfig,
    GanTrainer,
    RunBatchSampler,
    epoch_batches,
    make_loader,
    replace,
    resolve_channels_last,
    train_gan,
)

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    # 6 train identities: 12 items, 3 batches of 4 per epoch (short epochs)
    return write_synthetic_mri_df(tmp_path_factory.mktemp("mri_df_speed"), n_faces=8, size=32)


# --- what auto means ------------------------------------------------------------------------


def test_channels_last_auto_is_off_on_cpu_and_cuda_and_stays_selectable():
    assert resolve_channels_last(CPU, "auto") is False
    assert resolve_channels_last(CUDA, "auto") is False  # cl+bf16 measured slower than bf16
    assert resolve_channels_last(CUDA, True) is True
    assert resolve_channels_last(CPU, "on") is True
    assert resolve_channels_last(CUDA, "false") is False
    with pytest.raises(ConfigError, match="train.channels_last"):
        resolve_channels_last(CPU, "sometimes")


def test_adam_impl_auto_is_fused_where_torch_has_it(monkeypatch):
    assert adam_kwargs(CUDA, "auto") == {"fused": True}
    assert adam_kwargs(CPU, "auto") == (
        {"fused": True} if device_mod.fused_adam_supported(CPU) else {"foreach": True})
    monkeypatch.setattr(device_mod, "fused_adam_supported", lambda device: False)
    assert adam_kwargs(CPU, "auto") == {"foreach": True}
    monkeypatch.undo()
    assert adam_kwargs(CPU, "for_loop") == {"foreach": False}
    assert adam_kwargs(CUDA, "foreach") == {"foreach": True}
    with pytest.raises(ConfigError, match="adam_impl"):
        adam_kwargs(CPU, "fastest")


def test_precision_auto_is_bf16_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision(CUDA, "auto") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision(CUDA, "auto") == "fp16"


def test_cudnn_benchmark_auto_is_on_for_cuda_only(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    assert set_cudnn_benchmark(CPU, "auto") is False
    assert torch.backends.cudnn.benchmark is False  # a CPU run leaves the flag alone
    assert set_cudnn_benchmark(CUDA, "auto") is True
    assert torch.backends.cudnn.benchmark is True
    assert set_cudnn_benchmark(CUDA, False) is False
    assert torch.backends.cudnn.benchmark is False


def test_pin_memory_auto_pins_for_cuda_only(tiny_data):
    cfg = load_config(GanConfig, "configs/mri_gan.yaml", [f"data.root={tiny_data}",
                                                          "data.num_workers=2"])
    data = MriDfDataset(tiny_data, "train", 32)
    sampler = RunBatchSampler(data.labels, 0, 4, 2)
    assert make_loader(data, sampler, cfg.data, CUDA, 0).pin_memory is True
    assert make_loader(data, sampler, cfg.data, CPU, 0).pin_memory is False
    loader = make_loader(data, sampler, cfg.data, CPU, 0)
    assert loader.persistent_workers and loader.prefetch_factor == cfg.data.prefetch_factor


def test_config_files_name_the_levers_and_reject_bad_values():
    cfg = load_config(GanConfig, "configs/mri_gan.yaml")
    t = cfg.train
    assert (t.channels_last, t.adam_impl, t.cudnn_benchmark, t.compile, t.compile_mode) == (
        "auto", "auto", "auto", False, "default")
    assert cfg.data.pin_memory == "auto" and cfg.data.prefetch_factor >= 2
    for bad, key in (("train.adam_impl=fast", "adam_impl"), ("train.cudnn_benchmark=maybe",
                     "cudnn_benchmark"), ("data.prefetch_factor=0", "prefetch_factor"),
                     ("data.pin_memory=2", "pin_memory"),
                     ("train.compile_mode=fastest", "compile_mode")):
        with pytest.raises(ConfigError, match=key):
            load_config(GanConfig, "configs/mri_gan.yaml", [bad])
    # a mode without compile would silently compile nothing
    with pytest.raises(ConfigError, match="compile_mode='reduce-overhead' needs train.compile"):
        load_config(GanConfig, "configs/mri_gan.yaml", ["train.compile_mode=reduce-overhead"])
    cfg = load_config(GanConfig, "configs/mri_gan.yaml", ["train.compile=true",
                                                          "train.compile_mode=reduce-overhead"])
    assert (cfg.train.compile, cfg.train.compile_mode) == (True, "reduce-overhead")


def test_trainer_on_cpu_uses_fused_adam_and_the_contiguous_layout(tiny_data, tmp_path):
    tr = GanTrainer(tiny_config(tiny_data, tmp_path, "cpu", channels_last="auto",
                                adam_impl="auto"))
    assert tr.channels_last is False and tr.cudnn_benchmark is False
    fused = device_mod.fused_adam_supported(CPU)  # torch >= 2.4
    for opt in (tr.opt_g, tr.opt_d):
        assert bool(opt.defaults.get("fused")) == fused and opt.defaults["foreach"] is not fused


# --- the faster implementations train the same -----------------------------------------------


def _losses(cfg: GanConfig, steps: int = 4) -> list[dict[str, float]]:
    torch.manual_seed(0)
    tr = GanTrainer(cfg)
    gen = torch.Generator().manual_seed(1)
    face = torch.rand(4, 3, 32, 32, generator=gen)
    mri = torch.rand(4, 3, 32, 32, generator=gen) * 0.3
    out = []
    for _ in range(steps):
        torch.manual_seed(5)  # the same dropout noise in every variant
        out.append({k: float(v) for k, v in tr.train_step(tr.to_device(face),
                                                          tr.to_device(mri)).items()})
    return out


def _assert_same_trajectory(a, b, rel):
    assert len(a) == len(b)
    for step, (x, y) in enumerate(zip(a, b, strict=True)):
        for k in x:
            assert y[k] == pytest.approx(x[k], rel=rel, abs=1e-6), (step, k)
    assert a[0]["G"] != a[-1]["G"]  # the steps did change the model


@pytest.mark.parametrize("impl", ["foreach", "fused"])
def test_adam_implementations_give_the_for_loop_trajectory(tiny_data, tmp_path, impl,
                                                           one_torch_thread):
    plain = _losses(tiny_config(tiny_data, tmp_path, "plain", adam_impl="for_loop"))
    other = _losses(tiny_config(tiny_data, tmp_path, impl, adam_impl=impl))
    _assert_same_trajectory(plain, other, rel=1e-4)


def test_channels_last_gives_the_contiguous_trajectory(tiny_data, tmp_path, one_torch_thread):
    plain = _losses(tiny_config(tiny_data, tmp_path, "plain"))
    cl = _losses(tiny_config(tiny_data, tmp_path, "cl", channels_last=True))
    _assert_same_trajectory(plain, cl, rel=1e-4)


@pytest.fixture
def eager_compile(monkeypatch):
    """torch.compile with dynamo's ``eager`` backend: the graph capture, guards and recompiles
    of the real thing without inductor's C++ code generation, which took 219 s for the tiny G
    and D on this 2-core AMD EPYC (so the inductor variant below is opt-in on CPUs). Yields
    the keyword arguments of every torch.compile call (the eager backend ignores ``mode``)."""
    original = torch.compile
    calls: list[dict] = []

    def compile_eager(model, **kwargs):
        calls.append(kwargs)
        return original(model, backend="eager", **kwargs)

    monkeypatch.setattr(torch, "compile", compile_eager)
    torch._dynamo.reset()
    yield calls
    torch._dynamo.reset()


def test_compiled_models_give_the_plain_trajectory(tiny_data, tmp_path, one_torch_thread,
                                                   eager_compile):
    plain = _losses(tiny_config(tiny_data, tmp_path, "plain"), steps=3)
    cfg = tiny_config(tiny_data, tmp_path, "compiled", compile=True)
    compiled = _losses(cfg, steps=3)
    _assert_same_trajectory(plain, compiled, rel=1e-5)


def test_reduce_overhead_mode_reaches_torch_compile_and_trains_the_same_on_cpu(
        tiny_data, tmp_path, one_torch_thread, eager_compile):
    """``compile_mode: reduce-overhead`` (CUDA graphs on CUDA): torch.compile gets the mode for
    G, D and the frozen D; on a CPU there are no graphs (no cudagraph_mark_step_begin) and the
    steps follow the eager trajectory. The CUDA graph path itself is the cuda test below.
    Static shapes (``dynamic=False``): CUDA graphs replay fixed shapes."""
    plain = _losses(tiny_config(tiny_data, tmp_path, "plain"), steps=3)
    cfg = tiny_config(tiny_data, tmp_path, "graphs", compile=True,
                      compile_mode="reduce-overhead")
    assert GanTrainer(cfg).cuda_graphs is False
    assert eager_compile == [{"dynamic": False, "mode": "reduce-overhead"}] * 3
    _assert_same_trajectory(plain, _losses(cfg, steps=3), rel=1e-5)


def test_compile_time_is_logged_apart_from_the_step_rate(tiny_data, tmp_path, caplog,
                                                         eager_compile):
    cfg = tiny_config(tiny_data, tmp_path, "compiled_run", compile=True, max_steps=2,
                      eval_every=0, checkpoint_every=0)
    with caplog.at_level(logging.INFO, logger="mrigan.train"):
        train_gan(cfg)
    lines = [r.getMessage() for r in caplog.records if "torch.compile" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("step 1: torch.compile of G and D took")


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("MRIGAN_TEST_INDUCTOR_CPU"),
                    reason="inductor compiles for minutes on a small CPU; set "
                           "MRIGAN_TEST_INDUCTOR_CPU=1 to run it")
def test_inductor_compiled_models_give_the_plain_trajectory(tiny_data, tmp_path,
                                                            one_torch_thread):
    plain = _losses(tiny_config(tiny_data, tmp_path, "plain", dropout=0.0), steps=3)
    cfg = tiny_config(tiny_data, tmp_path, "compiled", dropout=0.0, compile=True)
    _assert_same_trajectory(plain, _losses(cfg, steps=3), rel=1e-3)


# --- one loader for the whole run, exact resume ----------------------------------------------


def test_run_sampler_is_the_epochs_back_to_back_from_any_position():
    labels = [1, 0] * 5 + [0, 0]  # 5 fakes: 10 items, batches of 4, 4, 2 per epoch
    whole = [b for e in range(3) for b in epoch_batches(labels, e, 7, 4)]
    sampler = RunBatchSampler(labels, 7, 4, epochs=3)
    assert list(sampler) == whole and len(sampler) == 9
    assert list(sampler.positions()) == [(0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0),
                                         (2, 1), (2, 2), (3, 0)]
    mid = RunBatchSampler(labels, 7, 4, 3, epoch=1, batch_in_epoch=1)
    assert list(mid) == whole[4:] and len(mid) == 5
    # a checkpoint written at the end of an epoch by the per-epoch loop: (epoch, n_batches)
    end = RunBatchSampler(labels, 7, 4, 3, epoch=0, batch_in_epoch=3)
    assert list(end) == whole[3:] and len(end) == 6


def test_one_loader_iterator_spans_all_epochs(tiny_data, tmp_path, monkeypatch):
    iterators = []
    original = torch.utils.data.DataLoader.__iter__

    def counting_iter(self):
        iterators.append(self)
        return original(self)

    monkeypatch.setattr(torch.utils.data.DataLoader, "__iter__", counting_iter)
    result = train_gan(tiny_config(tiny_data, tmp_path, "epochs", max_steps=0, epochs=3,
                                   eval_every=0, checkpoint_every=0))
    assert (result.step, result.epoch) == (9, 3)  # 3 epochs of 3 batches
    assert len(iterators) == 1


def test_resume_with_workers_reaches_the_single_process_weights(tiny_data, tmp_path):
    """Two persistent workers, prefetching, across epochs: killed at step 5 and resumed, the
    run ends where an uninterrupted run without workers ends."""
    common = {"max_steps": 8, "checkpoint_every": 4, "eval_every": 4}
    full = train_gan(tiny_config(tiny_data, tmp_path, "full", **common))

    cfg = replace(tiny_config(tiny_data, tmp_path, "workers", **common),
                  data={"num_workers": 2, "prefetch_factor": 3})
    with pytest.raises(Killed):
        train_gan(cfg, callbacks=[kill_at(5)])
    assert load_checkpoint(cfg.run_dir / "checkpoints" / "last.pt")["step"] == 4
    resumed = train_gan(cfg, resume=True)
    a, b = load_checkpoint(full.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    assert a["step"] == b["step"] == 8 and (a["epoch"], a["batch_in_epoch"]) == (2, 2)
    for part in ("generator", "discriminator"):
        for k, v in a[part].items():
            assert torch.equal(v, b[part][k]), (part, k)
    for part in ("opt_g", "opt_d"):
        for i, state in a[part]["state"].items():
            for k, v in state.items():
                assert torch.equal(v, b[part]["state"][i][k]), (part, i, k)
    assert [h["mean_ssim"] for h in a["history"]] == [h["mean_ssim"] for h in b["history"]]


# --- CUDA ------------------------------------------------------------------------------------


@pytest.mark.cuda
def test_trainer_cuda_defaults_are_bf16_fused_cudnn_benchmark_no_channels_last(tiny_data,
                                                                              tmp_path):
    cfg = tiny_config(tiny_data, tmp_path, "cuda", device="cuda", precision="auto",
                      channels_last="auto")
    tr = GanTrainer(cfg)
    assert tr.precision == "bf16" and tr.channels_last is False
    assert tr.cudnn_benchmark and torch.backends.cudnn.benchmark
    assert tr.opt_g.defaults["fused"] and tr.opt_d.defaults["fused"]
    terms = _losses(cfg, steps=3)
    fp32 = _losses(replace(cfg, train={"precision": "fp32", "adam_impl": "for_loop"}), steps=3)
    for x, y in zip(terms, fp32, strict=True):
        assert all(torch.isfinite(torch.tensor(list(x.values()))))
        assert x["G_pixel"] == pytest.approx(y["G_pixel"], rel=0.05)


@pytest.mark.cuda
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_bf16_cuda_step_follows_the_plain_one(tiny_data, tmp_path, mode):
    """``reduce-overhead``: CUDA graphs, recorded at step 2 and replayed after; 5 steps so
    that replays (with the previous step's graph outputs overwritten) are compared too, and
    no compiled graph fell back to running without CUDA graphs."""
    from torch._dynamo.utils import counters

    cfg = tiny_config(tiny_data, tmp_path, "cuda", device="cuda", precision="bf16",
                      dropout=0.0)
    plain = _losses(cfg, steps=5)
    graphs = replace(cfg, train={"compile": True, "compile_mode": mode})
    assert GanTrainer(graphs).cuda_graphs is (mode == "reduce-overhead")
    skips = counters["inductor"]["cudagraph_skips"]
    compiled = _losses(graphs, steps=5)
    _assert_same_trajectory(plain, compiled, rel=0.05)
    if mode == "reduce-overhead":
        assert counters["inductor"]["cudagraph_skips"] == skips


@pytest.mark.cuda
def test_resume_on_cuda_with_pinned_workers_is_exact(tiny_data, tmp_path):
    common = {"max_steps": 6, "checkpoint_every": 3, "eval_every": 3, "device": "cuda",
              "precision": "fp32", "cudnn_benchmark": False}
    full = train_gan(replace(tiny_config(tiny_data, tmp_path, "full", dropout=0.0, **common),
                             data={"num_workers": 2}))

    cfg = replace(tiny_config(tiny_data, tmp_path, "split", dropout=0.0, **common),
                  data={"num_workers": 2})
    with pytest.raises(Killed):
        train_gan(cfg, callbacks=[kill_at(4)])
    resumed = train_gan(cfg, resume=True)
    a, b = load_checkpoint(full.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    for k, v in a["generator"].items():  # cuDNN kernels may differ in the last bits
        assert torch.allclose(v, b["generator"][k], rtol=1e-4, atol=1e-6), k


def test_fused_adam_on_a_device_without_it_is_a_user_error(monkeypatch):
    monkeypatch.setattr(device_mod, "fused_adam_supported", lambda device: False)
    with pytest.raises(MriganError, match="fused Adam is not available"):
        adam_kwargs(CPU, "fused")
    assert adam_kwargs(CUDA, "auto") == {"foreach": True}  # auto falls back
