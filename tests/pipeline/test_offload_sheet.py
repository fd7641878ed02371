"""Contact sheets under model CPU offload, on the tiny pipeline: the text encoders run once up front, the transformer
and the VAE stay on the execution device for every cell, and everything is offloaded at the end of the sheet.

The offload hooks are the real ones: diffusers' `enable_model_cpu_offload(device="cpu")` chains accelerate's
`CpuOffload` hooks as it does on a GPU, only with `cpu:0` as the execution device. A CPU-only machine has one device,
so two things are emulated here, in the tests only: where each model is (every real `.to` of a model is seen, and
counted as a move when it sends the model between `cpu:0`, standing for the GPU, and plain `cpu`, the offload
device), and accelerate's check "is the previous model already offloaded?", which reads the parameters' device and
on one device always says yes; on a GPU it offloads the previous model, and so does `emulated_pre_forward`."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sd35ui.core import generate, sheet  # noqa: E402
from sd35ui.core.pipeline import LoadOptions, get_pipeline, load_pipeline, model_spec  # noqa: E402
from sd35ui.core.settings import GenerationSettings  # noqa: E402

TINY = model_spec("tiny-random")
BASE = GenerationSettings(prompt="a red fox", width=64, height=64, steps=2, guidance=5.0, seed=11)
MODELS = ("text_encoder", "text_encoder_2", "text_encoder_3", "transformer", "vae")
ENCODERS = MODELS[:3]
ON, OFF = "on", "off"  # on the execution device (cpu:0, a GPU's stand-in) / on the offload device (cpu)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


class Places:
    """Where each model of a pipeline is, from every `.to` it is given; `moves` lists (model, ON/OFF) changes.
    `.to` is watched on the models' classes: accelerate's `remove_hook_from_module`, which `maybe_free_model_hooks`
    runs, drops a `.to` set on the instance."""

    def __init__(self, pipe, patch: pytest.MonkeyPatch) -> None:
        self.names = {id(getattr(pipe, name)): name for name in MODELS}
        self.where = dict.fromkeys(MODELS, OFF)  # enable_model_cpu_offload starts with everything on the CPU
        self.moves: list[tuple[str, str]] = []
        for cls in {type(getattr(pipe, name)) for name in MODELS}:
            patch.setattr(cls, "to", self._watching(cls.to))

    def _watching(self, to):
        import torch

        def counting_to(model, *args, **kwargs):
            name = self.names.get(id(model))
            device = kwargs.get("device", args[0] if args else None)
            if name is not None and isinstance(device, (str, torch.device)):
                place = ON if torch.device(device).index == 0 else OFF
                if place != self.where[name]:
                    self.where[name] = place
                    self.moves.append((name, place))
            return to(model, *args, **kwargs)

        return counting_to

    def place_of(self, model) -> str:
        """ON or OFF; OFF for a model not watched (of another pipeline)."""
        return self.where.get(self.names.get(id(model)), OFF)

    def of(self, name: str, since: int = 0) -> list[str]:
        return [place for model, place in self.moves[since:] if model == name]

    def all_off(self) -> bool:
        return all(place == OFF for place in self.where.values())


@pytest.fixture(scope="module")
def offloaded():
    """A tiny pipeline of its own (the session's shared one stays as it is) with model CPU offload hooks, and the
    tracker of where its models are. accelerate's previous-model check is answered from the tracker."""
    from accelerate.hooks import CpuOffload, UserCpuOffloadHook

    pipe = load_pipeline(LoadOptions(model="tiny-random"))
    pipe.enable_model_cpu_offload(device="cpu")
    original = CpuOffload.pre_forward

    def emulated_pre_forward(self, module, *args, **kwargs):
        prev = self.prev_module_hook
        if isinstance(prev, UserCpuOffloadHook) and places.place_of(prev.model) == ON:
            prev.offload()  # what accelerate does when the previous model is on the GPU
        return original(self, module, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        places = Places(pipe, patch)
        patch.setattr(CpuOffload, "pre_forward", emulated_pre_forward)
        yield pipe, places


def chain_intact(pipe) -> bool:
    """Each offload hook's previous hook is the one before it in `model_cpu_offload_seq`, as diffusers chains them,
    and the pipeline's own `maybe_free_model_hooks` is in place."""
    hooks = pipe._all_hooks
    models = [hook.model for hook in hooks]
    expected = [None, *hooks[:-1]]
    return (
        models == [getattr(pipe, name) for name in MODELS]
        and all(hook.hook.prev_module_hook is prev for hook, prev in zip(hooks, expected))
        and "maybe_free_model_hooks" not in vars(pipe)
    )


def prompt_spec(**options):
    """3 x 2 cells: two prompts (X) by guidance 1 (no negative prompt needed), 5 and 6 (Y); three texts to encode."""
    return sheet.make_spec(BASE, "Prompt S/R", "red, blue", "Guidance", "1, 5, 6", model=TINY, **options)


def pixels(image):
    return np.asarray(image, dtype=np.int16)


def test_one_generation_moves_the_transformer_and_vae_there_and_back(offloaded):
    """The behaviour of a single image, which the sheet improves on: per image, the transformer and the VAE each go
    to the execution device and back, and the text encoders run only for texts not in the cache."""
    pipe, places = offloaded
    generate.generate(pipe, BASE.replace(seed=10))  # encodes the prompt into the global prompt cache
    one_image = [("transformer", ON), ("transformer", OFF), ("vae", ON), ("vae", OFF)]
    for seed in (11, 12):
        start = len(places.moves)
        generate.generate(pipe, BASE.replace(seed=seed))
        assert places.moves[start:] == one_image
    assert places.all_off() and chain_intact(pipe)


def test_sheet_keeps_transformer_and_vae_on_device(offloaded):
    pipe, places = offloaded
    seen = []  # (moves so far, where the models are) at every step
    start = len(places.moves)
    result = sheet.run_sheet(
        pipe,
        prompt_spec(),
        on_progress=lambda cell, cells, step, steps: seen.append((len(places.moves), dict(places.where))),
        cache=generate.PromptCache(),
    )
    assert result.complete and len(result.cells) == 6
    # once for the whole sheet, where one image at a time moves each twice per cell (12 there and back each)
    assert places.of("transformer", start) == [ON, OFF]
    assert places.of("vae", start) == [ON, OFF]
    first_step, where = seen[0]
    assert [where[name] for name in MODELS] == [OFF, OFF, OFF, ON, OFF]  # the encoders gave way to the transformer
    for name in ENCODERS:  # three texts, each encoded once
        assert 1 <= places.of(name, start).count(ON) <= 3, name
    assert all(model not in ENCODERS for model, _ in places.moves[first_step:])  # all before the first step
    assert places.all_off() and chain_intact(pipe)


@pytest.fixture(scope="module")
def plain():
    """A tiny pipeline without offload hooks whose weights lie in memory as the offloaded pipeline's do.

    Exact equality with offload needs the same weights in the same kind of memory, or it depends on the CPU. With
    `cpu:0` as the execution device, each hook's `pre_forward` finds its model on `cpu`, which is not `cpu:0`, and runs
    `module.to("cpu:0")`: a fresh copy of every weight in torch's own allocations, 64-byte aligned, at every forward.
    A pipeline loaded by `from_pretrained` keeps its weights where the safetensors file is mapped, at the file offset
    mod 64 (56 for the tiny model's CLIP encoders and transformer, 40 for T5, 8 to 52 for the VAE). MKL's
    matrix-vector product, which `nn.Linear` runs for a single row (CLIP's `text_projection` of the pooled vector),
    adds in an order that depends on the weight's alignment on some CPUs: on an AMD EPYC (AVX2, whatever
    ATEN_CPU_CAPABILITY says: MKL is not ATen) the pooled embeddings of a loaded and a copied pipeline differ in the
    last bit (~5e-7), and after two steps single pixels by 1/255; on the Intel Xeon this test was written on they
    happened not to. So the reference is loaded on its own (a residency that changed the offloaded pipeline's weights
    would show) and copied as the hooks copy."""
    pipe = load_pipeline(LoadOptions(model="tiny-random"))
    for name in MODELS:
        getattr(pipe, name).to("cpu:0")  # the offload hook's move: every tensor copied, 64-byte aligned
    return pipe


def test_sheet_pixels_are_those_without_offload(offloaded, plain):
    """Residency moves models, not numbers: the cells equal the same sheet on a pipeline without offload hooks (with
    its weights in the same kind of memory: `plain`), and single images made with offload (the behaviour before)."""
    pipe, _ = offloaded
    assert not generate.offloads_models(plain) and generate.offloads_models(pipe)
    spec = prompt_spec()
    resident = sheet.run_sheet(pipe, spec, cache=generate.PromptCache())
    without = sheet.run_sheet(plain, spec, cache=generate.PromptCache())
    for made, other in zip(resident.cells, without.cells, strict=True):
        assert made.cell == other.cell and np.array_equal(pixels(made.image), pixels(other.image)), made.cell
    for made in resident.cells[:2]:
        single = generate.generate(pipe, made.settings)
        assert np.array_equal(pixels(made.image), pixels(single.image)), made.cell


class Boom(Exception):
    pass


@pytest.mark.parametrize("ending", ["stop", "error", "out of memory"])
def test_a_sheet_that_ends_early_offloads_everything(offloaded, ending):
    import torch

    pipe, places = offloaded
    stop = threading.Event()

    def on_progress(cell, cells, step, steps):
        if cell == 2:
            assert places.where["transformer"] == ON and "maybe_free_model_hooks" in vars(pipe)  # still resident
            if ending == "stop":
                stop.set()
            elif ending == "error":
                raise Boom()
            else:
                raise torch.OutOfMemoryError("emulated")

    start = len(places.moves)
    if ending == "stop":
        result = sheet.run_sheet(pipe, prompt_spec(), on_progress, stop, cache=generate.PromptCache())
        assert result.stopped and len(result.cells) == 2
    else:
        expected = Boom if ending == "error" else sheet.SheetOutOfMemory
        with pytest.raises(expected):
            sheet.run_sheet(pipe, prompt_spec(), on_progress, stop, cache=generate.PromptCache())
    assert places.of("transformer", start) == [ON, OFF]
    assert places.all_off() and chain_intact(pipe)
    after = len(places.moves)
    generate.generate(pipe, BASE)  # a following single image offloads as before
    assert places.of("transformer", after) == [ON, OFF] and places.of("vae", after) == [ON, OFF]
    assert places.all_off() and chain_intact(pipe)


def test_resident_models_nests(offloaded):
    """An outer job (a worker's) around the sheet: the inner end offloads nothing, the outer end everything."""
    pipe, places = offloaded
    start = len(places.moves)
    with generate.resident_models(pipe):
        with generate.resident_models(pipe):
            generate.generate(pipe, BASE)
        assert places.where["transformer"] == ON and places.where["vae"] == ON
        sheet.run_sheet(pipe, prompt_spec(), cache=generate.PromptCache())
        assert places.where["transformer"] == ON and not chain_intact(pipe)
    assert places.of("transformer", start) == [ON, OFF] and places.of("vae", start) == [ON, OFF]
    assert places.all_off() and chain_intact(pipe)


def test_without_offload_hooks_nothing_changes():
    plain = get_pipeline(LoadOptions(model="tiny-random"))
    before = dict(vars(plain))
    with generate.resident_models(plain):
        assert vars(plain) == before
    assert vars(plain) == before


def test_a_sheet_on_a_worker_keeps_transformer_and_vae_on_device_too(offloaded):
    """`workers.run_sheet_on` (the app's and CLI's path for --devices and Ray): each worker's job encodes the texts
    first and keeps its transformer and VAE on the device until the job ends, as `run_sheet` does."""
    from sd35ui.core import workers

    pipe, places = offloaded
    seen = []
    start = len(places.moves)
    worker = workers.LocalWorker(pipe, cache=generate.PromptCache())
    result = workers.run_sheet_on(
        [worker], prompt_spec(), on_progress=lambda *_: seen.append((len(places.moves), dict(places.where)))
    )
    assert result.complete and len(result.cells) == 6
    assert places.of("transformer", start) == [ON, OFF] and places.of("vae", start) == [ON, OFF]
    first_step, where = seen[0]
    assert [where[name] for name in MODELS] == [OFF, OFF, OFF, ON, OFF]
    assert all(model not in ENCODERS for model, _ in places.moves[first_step:])
    assert places.all_off() and chain_intact(pipe)
    expected = sheet.run_sheet(pipe, prompt_spec(), cache=generate.PromptCache())
    made = {done.cell.index: pixels(done.image) for done in result.cells}
    assert all(np.array_equal(made[done.cell.index], pixels(done.image)) for done in expected.cells)
