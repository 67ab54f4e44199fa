"""The multistep samplers on flow-matching models (tiny random-weight pipelines, on the CPU): sdtui's image
equals bare diffusers' with the same scheduler built by hand, pixel for pixel, and differs from FlowMatch
Euler's; the model's own shift (fixed or by image size) and a shift the user sets carry over; a family whose
pipelines cannot run a sampler refuses it in one sentence."""

import numpy as np
import pytest
import torch

from tui.engine import Engine, EngineOptions, Failed, GenerationRequest

PROMPT, SEED, STEPS, SIZE = "a red fox", 3, 3, 32  # three steps: one of them is of the second order
FLOW = {"use_flow_sigmas": True, "prediction_type": "flow_prediction"}


def _folder(tmp_path_factory, name: str, pipe):
    folder = tmp_path_factory.mktemp("models") / name
    pipe.save_pretrained(folder)
    return folder


def _engine(folder) -> Engine:
    engine = Engine(EngineOptions(model=str(folder), preview_max_fps=0))
    engine.load()
    return engine


@pytest.fixture(scope="module")
def z_image(tmp_path_factory):
    from tests.tiny_models import build_tiny_z_image

    return _engine(_folder(tmp_path_factory, "tiny-z-image-turbo", build_tiny_z_image()))


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    from tests.tiny_flux import build_tiny_flux

    return _engine(_folder(tmp_path_factory, "tiny-flux-dev", build_tiny_flux()))


@pytest.fixture(scope="module")
def flux2(tmp_path_factory):
    from tests.tiny_flux2 import build_tiny_flux2_klein

    return _engine(_folder(tmp_path_factory, "tiny-flux2-klein-4b", build_tiny_flux2_klein()))


@pytest.fixture(scope="module")
def sd3(tmp_path_factory):
    from tests.tiny_sd3 import build_tiny_sd3

    return _engine(_folder(tmp_path_factory, "tiny-sd3.5-large", build_tiny_sd3()))


def _through_engine(engine: Engine, scheduler: str, shift: float = 0.0) -> np.ndarray:
    events = []
    finished = engine.generate(GenerationRequest(PROMPT, width=SIZE, height=SIZE, steps=STEPS, seed=SEED,
                                                 guidance=0.0, scheduler=scheduler, shift=shift), events.append)
    assert len(finished) == 1, [e.message for e in events if isinstance(e, Failed)]
    return np.asarray(finished[0].image)


def _bare(engine: Engine, scheduler) -> np.ndarray:
    """The engine's own pipeline called as diffusers' documentation does, with ``scheduler`` in it."""
    pipe, kept = engine.pipe, engine.pipe.scheduler
    pipe.scheduler = scheduler
    try:
        image = pipe(prompt=PROMPT, height=SIZE, width=SIZE, num_inference_steps=STEPS, guidance_scale=0.0,
                     generator=torch.Generator("cpu").manual_seed(SEED)).images[0]
    finally:
        pipe.scheduler = kept
    return np.asarray(image)


def _model_config(engine: Engine) -> dict:
    from diffusers import FlowMatchEulerDiscreteScheduler

    return dict(FlowMatchEulerDiscreteScheduler.from_pretrained(engine.options.model, subfolder="scheduler").config)


def _unipc(config: dict, **changes):
    from diffusers import UniPCMultistepScheduler

    config = {**config, **changes}
    return UniPCMultistepScheduler.from_config(config, **FLOW, flow_shift=config["shift"])


def _dpmpp_2m(config: dict, **changes):
    from diffusers import DPMSolverMultistepScheduler

    config = {**config, **changes}
    return DPMSolverMultistepScheduler.from_config(config, **FLOW, algorithm_type="dpmsolver++", solver_order=2,
                                                   flow_shift=config["shift"])


def test_flow_unipc_is_diffusers_unipc_on_flow_sigmas_with_the_models_shift_and_the_users(flux):
    config = _model_config(flux)  # FLUX.1 dev's: a shift by image size (mu)
    unipc = _through_engine(flux, "FlowMatch UniPC")
    assert np.array_equal(unipc, _bare(flux, _unipc(config)))
    assert not np.array_equal(unipc, _through_engine(flux, "FlowMatch Euler"))
    shifted = _through_engine(flux, "FlowMatch UniPC", shift=9.0)
    assert np.array_equal(shifted, _bare(flux, _unipc(config, shift=9.0, use_dynamic_shifting=False)))
    assert not np.array_equal(shifted, unipc)


def test_flow_unipc_cannot_shift_the_list_of_sigmas_z_images_pipeline_hands_it_so_z_image_refuses_it(z_image):
    with pytest.raises(TypeError):
        _bare(z_image, _unipc(_model_config(z_image)))
    assert _refusal(z_image, "FlowMatch UniPC") == ("generation failed: ValueError: scheduler: FlowMatch UniPC does "
                                                   "not work with Z-Image models; use one of FlowMatch Euler")


@pytest.mark.parametrize("family", ["flux2", "sd3"])
def test_flow_dpmpp_2m_is_diffusers_dpm_solver_on_flow_sigmas(family, request):
    engine = request.getfixturevalue(family)
    config = _model_config(engine)  # FLUX.2's: a shift by image size (mu); SD3.5's: a fixed shift 3
    dpm = _through_engine(engine, "FlowMatch DPM++ 2M")
    assert np.array_equal(dpm, _bare(engine, _dpmpp_2m(config)))
    assert not np.array_equal(dpm, _through_engine(engine, "FlowMatch Euler"))


def test_sd3_takes_a_shift_with_flow_dpmpp_2m(sd3):
    shifted = _through_engine(sd3, "FlowMatch DPM++ 2M", shift=9.0)
    assert np.array_equal(shifted, _bare(sd3, _dpmpp_2m(_model_config(sd3), shift=9.0)))
    assert not np.array_equal(shifted, _through_engine(sd3, "FlowMatch DPM++ 2M"))


def _refusal(engine: Engine, scheduler: str, shift: float = 0.0) -> str:
    events = []
    engine.generate(GenerationRequest(PROMPT, width=SIZE, height=SIZE, steps=STEPS, seed=SEED, scheduler=scheduler,
                                      shift=shift), events.append)
    failed = [e for e in events if isinstance(e, Failed)]
    assert failed
    return failed[0].message


@pytest.mark.parametrize("family, label, offered", [("z_image", "Z-Image", "FlowMatch Euler"),
                                                    ("flux", "FLUX.1", "FlowMatch Euler, FlowMatch UniPC")])
def test_families_whose_pipelines_pass_their_own_sigmas_refuse_flow_dpmpp_2m(family, label, offered, request):
    message = _refusal(request.getfixturevalue(family), "FlowMatch DPM++ 2M")
    assert message == (f"generation failed: ValueError: scheduler: FlowMatch DPM++ 2M does not work with {label} "
                       f"models; use one of {offered}")


def test_flux2_refuses_a_fixed_shift_for_flow_dpmpp_2m_whose_scheduler_takes_mu_only_to_shift_by_it(flux2):
    message = _refusal(flux2, "FlowMatch DPM++ 2M", shift=9.0)
    assert message.endswith("scheduler: FlowMatch DPM++ 2M takes only a shift by image size on FLUX.2 klein models "
                            "(the model's own, at shift 0); use another sampler for a fixed shift")
