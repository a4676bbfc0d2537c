"""Schedules, DDIM sampling/inversion and training losses against the official numerics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from diffae_app import DiffAE
from diffae_app.diffusion import (
    ddim_invert,
    ddim_sample,
    ddim_timesteps,
    eps_loss,
    make_betas,
    make_schedule,
    p2_weights,
    q_sample,
    x0_weights,
)

pytestmark = pytest.mark.usefixtures("single_thread")

LOSS_TOL = 1e-4  # REFERENCE_CASES.md: losses


def _official_ddim_spacing(num_timesteps: int, count: int) -> list[int]:
    """The official `space_timesteps(T, 'ddimN')` rule, as REFERENCE_CASES.md states it."""
    for stride in range(1, num_timesteps):
        if len(range(0, num_timesteps, stride)) == count:
            return list(range(0, num_timesteps, stride))
    raise ValueError(f"cannot create exactly {count} steps with an integer stride")


@pytest.mark.parametrize(
    ("num_steps", "stride"), [(10, 100), (20, 50), (50, 20), (100, 10), (250, 4)]
)
def test_ddim_timesteps_follow_official_rule(num_steps: int, stride: int) -> None:
    kept = ddim_timesteps(1000, num_steps)
    assert kept == _official_ddim_spacing(1000, num_steps) == list(range(0, 1000, stride))
    schedule = make_schedule("linear", 1000, num_steps)
    assert schedule.timesteps.tolist() == kept and schedule.num_steps == num_steps


@pytest.mark.parametrize("bad", [0, -1, 1001])
def test_ddim_timesteps_rejects_impossible_counts(bad: int) -> None:
    with pytest.raises(ValueError, match="num_steps"):
        ddim_timesteps(1000, bad)


@pytest.mark.parametrize(
    ("refs_file", "key", "beta_schedule"),
    [
        ("tiny_autoenc_refs.pt", "ddim_render", "linear"),
        ("tiny_autoenc_latent_refs.pt", "ddim_render", "linear"),
        ("tiny_autoenc_latent_refs.pt", "ddim_latent", "const0.008"),
    ],
)
def test_respaced_tables_equal_official(
    official_dir: Path, refs_file: str, key: str, beta_schedule: str
) -> None:
    meta = torch.load(official_dir / "reference" / refs_file, weights_only=True)["meta"]
    table = meta[key]
    schedule = make_schedule(beta_schedule, 1000, len(table["timestep_map"]))
    assert schedule.timesteps.tolist() == table["timestep_map"]
    np.testing.assert_array_equal(schedule.alpha_bar, table["alphas_cumprod"])  # bit-exact
    betas = 1 - schedule.alpha_bar / schedule.alpha_bar_prev
    np.testing.assert_allclose(betas, table["betas"], rtol=1e-12, atol=1e-17)
    assert schedule.alpha_bar_prev[0] == 1.0 and schedule.alpha_bar_next[-1] == 0.0


def test_beta_schedules() -> None:
    linear = make_betas("linear", 1000)
    assert linear.dtype == np.float64 and linear[0] == 1e-4 and linear[-1] == 0.02
    const = make_betas("const0.008", 1000)
    assert np.all(const == 0.008)
    assert np.prod(1 - const) == pytest.approx(0.992**1000)
    with pytest.raises(ValueError, match="unknown beta schedule"):
        make_betas("quadratic", 1000)
    # As the official get_named_beta_schedule: every schedule scales with 1000 / T, and
    # 'cosine' is Nichol & Dhariwal's, betas capped at 0.999.
    assert np.all(make_betas("const0.008", 500) == 2.0 * 0.008)
    assert make_betas("linear", 500)[-1] == pytest.approx(0.04)
    cosine = make_betas("cosine", 1000)
    alpha_bar = np.cos((np.arange(1001) / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2
    np.testing.assert_allclose(
        cosine, np.minimum(1 - alpha_bar[1:] / alpha_bar[:-1], 0.999), rtol=1e-12
    )
    assert cosine[-1] == 0.999
    with pytest.raises(ValueError, match="bad constant beta schedule"):
        make_betas("const0.8", 500)


def _oracle(x_0: torch.Tensor, schedule_full):
    """A noise predictor that knows x_0: eps = (x_t - sqrt(a) x_0) / sqrt(1 - a)."""

    def model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = torch.from_numpy(schedule_full.alpha_bar)[t].float().reshape(-1, 1)
        return (x_t - a.sqrt() * x_0) / (1 - a).sqrt()

    return model


def test_ddim_with_exact_eps_recovers_x0_and_inverts() -> None:
    full = make_schedule("linear", 1000)
    schedule = make_schedule("linear", 1000, 20)
    generator = torch.Generator().manual_seed(0)
    x_0 = torch.rand(3, 6, generator=generator) * 1.6 - 0.8
    eps = torch.randn(3, 6, generator=generator)
    t_top = torch.full((3,), int(schedule.timesteps[-1]))
    x_T = q_sample(full, x_0, t_top, eps)
    steps: list[dict] = []
    out = ddim_sample(_oracle(x_0, full), x_T, schedule, callback=steps.append)
    torch.testing.assert_close(out, x_0, atol=1e-5, rtol=0)
    assert [s["t"] for s in steps] == schedule.timesteps[::-1].tolist()
    assert [s["i"] for s in steps] == list(range(20))
    torch.testing.assert_close(steps[-1]["x"], out, atol=0, rtol=0)
    # Inversion ends on the eps estimate at the noisiest kept step (alpha_bar_next = 0). With
    # the oracle the implied eps never changes from the first step's (x_0 - sqrt(a_0) x_0) /
    # sqrt(1 - a_0).
    a_0 = float(schedule.alpha_bar[0])
    x_T_inv = ddim_invert(_oracle(x_0, full), x_0, schedule)
    torch.testing.assert_close(x_T_inv, x_0 * (1 - a_0**0.5) / (1 - a_0) ** 0.5, atol=1e-5, rtol=0)


def test_ddim_clips_pred_x0_only_when_asked() -> None:
    schedule = make_schedule("linear", 1000, 5)
    x_T = torch.full((1, 4), 3.0)

    def zero_eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x_t)

    clipped = ddim_sample(zero_eps, x_T, schedule, clip_denoised=True)
    free = ddim_sample(zero_eps, x_T, schedule, clip_denoised=False)
    assert clipped.abs().max() <= 1.0 and free.abs().max() > 1.0


def test_q_sample_matches_closed_form() -> None:
    full = make_schedule("linear", 1000)
    x_0, noise = torch.ones(2, 3), torch.full((2, 3), 2.0)
    t = torch.tensor([0, 999])
    a = torch.tensor(np.cumprod(1 - make_betas("linear", 1000))[[0, 999]]).float()[:, None]
    expected = (a.sqrt() + 2 * (1 - a).sqrt()).expand(2, 3)
    torch.testing.assert_close(q_sample(full, x_0, t, noise), expected)


def test_eps_loss_rejects_unknown_loss() -> None:
    full = make_schedule("linear", 1000)
    with pytest.raises(ValueError, match="unknown loss"):
        eps_loss(
            lambda x, t: x, full, torch.zeros(1, 2), torch.tensor([3]), torch.zeros(1, 2), loss="l2"
        )


def test_p2_weights_are_uniform_at_gamma_0_and_favour_noisy_timesteps_above() -> None:
    full = make_schedule("linear", 1000)
    torch.testing.assert_close(p2_weights(full, 0.0), torch.ones(1000))
    w = p2_weights(full, 1.0)
    assert w.mean().item() == pytest.approx(1.0, abs=1e-5)
    assert bool((w[1:] >= w[:-1]).all()), "weights must grow with the noise level"
    assert w[0] < 1e-3 * w[999]  # nearly clean x_t: x_t alone suffices, little to learn for z_sem
    snr_500 = full.alpha_bar[500] / (1 - full.alpha_bar[500])
    ratio = (1 + snr_500) / (1 + full.alpha_bar[999] / (1 - full.alpha_bar[999]))
    assert (w[999] / w[500]).item() == pytest.approx(ratio, rel=1e-4)
    with pytest.raises(ValueError, match="gamma >= 0"):
        p2_weights(full, -1.0)


def test_x0_weights_turn_the_eps_loss_into_a_capped_x0_loss() -> None:
    full = make_schedule("linear", 1000)
    w = x0_weights(full, 100.0)
    assert w.mean().item() == pytest.approx(1.0, abs=1e-5)
    snr = torch.from_numpy(full.alpha_bar / (1 - full.alpha_bar)).float()
    # Where uncapped, weight x SNR is the same at every t: each noise level's x0 error counts
    # the same (the eps error is sqrt(SNR) times the x0 error).
    uncapped = (1 / snr) < 100
    in_x0_terms = (w * snr)[uncapped]
    torch.testing.assert_close(in_x0_terms, torch.full_like(in_x0_terms, in_x0_terms[0].item()))
    assert bool((~uncapped[:500]).sum() == 0) and bool((~uncapped[-50:]).all())
    assert torch.allclose(w[~uncapped], w[-1])  # the cap: flat over the noisiest steps
    with pytest.raises(ValueError, match="cap > 0"):
        x0_weights(full, 0.0)


def test_eps_loss_weighs_each_pixel_by_the_map() -> None:
    full = make_schedule("linear", 1000)
    x_0 = torch.zeros(1, 3, 8, 8)
    noise = torch.zeros(1, 3, 8, 8)
    t = torch.tensor([500])
    error_at = torch.zeros(1, 3, 8, 8)
    error_at[..., 2, 5] = 1.0  # the prediction misses one pixel by 1

    def miss_one(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return error_at

    plain = eps_loss(miss_one, full, x_0, t, noise)
    weights = torch.ones(8, 8)
    weights[2, 5] = 3.0
    weighted = eps_loss(miss_one, full, x_0, t, noise, pixel_weights=weights)
    assert weighted.item() == pytest.approx(3 * plain.item())


def _report(name: str, got: torch.Tensor, ref: torch.Tensor, tol: float) -> None:
    err = (got - ref).abs().max().item()
    print(f"REF {name}: max_abs {err:.2e} (tol {tol:.0e})")
    assert err <= tol, f"{name}: max abs error {err:.3e} > {tol:.0e}"


@torch.inference_mode()
def test_training_losses_match_official(official_dir: Path) -> None:
    ref_dir = official_dir / "reference"
    refs = torch.load(ref_dir / "tiny_autoenc_refs.pt", weights_only=True)
    m = DiffAE.from_official(ref_dir / "tiny_autoenc.ckpt")
    full = make_schedule(m.config.diffusion.beta_schedule, m.config.diffusion.num_timesteps)
    x, t, noise = refs["x"], refs["train_t"], refs["train_noise"]
    _report("tiny_autoenc.train_x_t", q_sample(full, x, t, noise), refs["train_x_t"], LOSS_TOL)
    loss = eps_loss(m.noise_predictor(), full, x, t, noise, cond=refs["enc_cond"], loss="mse")
    _report("tiny_autoenc.train_loss", loss, refs["train_loss"], LOSS_TOL)


@torch.inference_mode()
def test_latent_training_loss_matches_official(official_dir: Path) -> None:
    ref_dir = official_dir / "reference"
    refs = torch.load(ref_dir / "tiny_autoenc_latent_refs.pt", weights_only=True)
    m = DiffAE.from_official(ref_dir / "tiny_autoenc_latent.ckpt")
    d = m.config.latent_diffusion
    assert (d.beta_schedule, d.loss) == ("const0.008", "l1")
    loss = eps_loss(
        m.latent_net,
        make_schedule(d.beta_schedule, d.num_timesteps),
        refs["latent_train_x_start"],
        refs["latent_train_t"],
        refs["latent_train_noise"],
        loss=d.loss,
    )
    _report("tiny_autoenc_latent.latent_train_loss", loss, refs["latent_train_loss"], LOSS_TOL)


def test_power_spacing_ends_at_pure_noise_and_is_denser_at_low_noise() -> None:
    kept = ddim_timesteps(1000, 20, "power", 1.25)
    assert len(kept) == 20 and kept[0] == 0 and kept[-1] == 999
    assert (np.diff(kept) > 0).all()
    gaps = np.diff(kept)
    assert gaps[0] < 50 < gaps[-1]  # uniform 'ddim20' has 50 everywhere
    assert ddim_timesteps(1000, 20, "power", 1.0)[-1] == 999
    assert ddim_timesteps(10, 10, "power", 3.0) == list(range(10))  # no room: every step
    assert ddim_timesteps(1000, 1, "power", 1.25) == [999]
    schedule = make_schedule("linear", 1000, 20, spacing="power", power=1.25)
    assert schedule.timesteps.tolist() == kept
    with pytest.raises(ValueError, match="spacing"):
        ddim_timesteps(1000, 20, "cosine")
    with pytest.raises(ValueError, match="power"):
        ddim_timesteps(1000, 20, "power", 0.0)


def _smooth_eps_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A nonlinear eps field with a timestep dependence, like a network but cheap and smooth."""
    scale = 0.5 + t.float()[:, None] / 2000
    return torch.tanh(scale * x) + 0.1 * x.roll(1, dims=1)


@pytest.mark.parametrize("spacing", ["uniform", "power"])
def test_fixed_point_inversion_approaches_the_exact_inverse(spacing: str) -> None:
    schedule = make_schedule("linear", 1000, 10, spacing=spacing, power=1.25)
    x_0 = torch.rand(4, 8, generator=torch.Generator().manual_seed(1)) * 1.4 - 0.7
    errors = []
    for n in (0, 1, 5):
        x_T = ddim_invert(_smooth_eps_model, x_0, schedule, fixed_point_iterations=n)
        back = ddim_sample(_smooth_eps_model, x_T, schedule)
        errors.append(float((back - x_0).abs().max()))
    # Measured: uniform 5.2e-2, 3.6e-2, 3.2e-3; power 9.6e-2, 3.9e-2, 6.4e-3.
    assert errors[1] < errors[0] and errors[2] < errors[1] / 4, errors


def test_zero_fixed_point_iterations_is_the_released_algorithm() -> None:
    schedule = make_schedule("linear", 1000, 10)
    x_0 = torch.rand(2, 5, generator=torch.Generator().manual_seed(2)) * 2 - 1
    calls: list[int] = []

    def counted(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(int(t[0]))
        return _smooth_eps_model(x, t)

    x = x_0
    for k in range(schedule.num_steps):  # the release, written out
        eps = _smooth_eps_model(x, torch.full((2,), int(schedule.timesteps[k])))
        a, a_next = float(schedule.alpha_bar[k]), float(schedule.alpha_bar_next[k])
        x0 = ((x - (1 - a) ** 0.5 * eps) / a**0.5).clamp(-1, 1)
        eps = (x - a**0.5 * x0) / (1 - a) ** 0.5
        x = a_next**0.5 * x0 + (1 - a_next) ** 0.5 * eps
    torch.testing.assert_close(ddim_invert(counted, x_0, schedule), x, atol=1e-5, rtol=1e-5)
    assert calls == schedule.timesteps.tolist()
    calls.clear()
    steps: list[dict] = []
    ddim_invert(counted, x_0, schedule, fixed_point_iterations=2, callback=steps.append)
    # Refined: stops at alpha_bar[K-1] (the sampler's start), 1 + n calls per step taken.
    assert len(calls) == 3 * 9 and [s["i"] for s in steps] == list(range(9))
    with pytest.raises(ValueError, match="fixed_point_iterations"):
        ddim_invert(counted, x_0, schedule, fixed_point_iterations=-1)
