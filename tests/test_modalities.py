"""Audio and signed-distance volumes: readers against independent ones, the mesh SDF against
closed forms, the modality metrics on hand-made cases, and both modalities through launch."""

import json

import numpy as np
import pytest
from scipy.io import wavfile

from nint_dist import launch, metrics
from nint_dist.ingest import ingest, main
from nint_dist.outputs import export_reconstruction
from nint_dist.signal import SignalSpec, open_signal
from nint_dist.sources import audio, mesh
from nint_dist.sources.images import IMAGE_DOMAIN
from tests.helpers import make_audio, torus_mesh, write_obj

CUBE_V = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
CUBE_F = np.array(
    [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
     [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]
)  # fmt: skip


def test_wav_reader_matches_scipy(tmp_path):
    wavfile.write(tmp_path / "tone.wav", 44100, make_audio(frames=5000))  # scipy's writer: 32-bit float
    ingest(tmp_path / "tone.wav", tmp_path / "tone.zarr", dtype="float32")
    array, spec = open_signal(tmp_path / "tone.zarr")
    rate, reference = wavfile.read(tmp_path / "tone.wav")
    assert spec.kind == "audio" and spec.grid == (len(reference),) and spec.domain == ((-1.0, 1.0),)
    assert spec.extra["sample_rate"] == rate and np.array_equal(array[:, 0], reference)
    pcm = np.random.default_rng(0).integers(-32768, 32767, (500, 2), dtype=np.int16)
    wavfile.write(tmp_path / "pcm.wav", 8000, pcm)
    ingest(tmp_path / "pcm.wav", tmp_path / "pcm.zarr")
    array, spec = open_signal(tmp_path / "pcm.zarr")
    assert np.array_equal(array[...], pcm) and spec.value_range == (-32768.0, 32767.0)


def test_truncated_wav_is_refused(tmp_path, capsys):
    audio.write_wav(tmp_path / "a.wav", np.zeros((1000, 1)), 16000)
    (tmp_path / "cut.wav").write_bytes((tmp_path / "a.wav").read_bytes()[:2000])
    assert main([str(tmp_path / "cut.wav"), str(tmp_path / "o.zarr")]) == 2
    assert "truncated" in capsys.readouterr().err and not (tmp_path / "o.zarr").exists()


def box_sdf(points, half):
    """Signed distance to an axis-aligned box centred at 0 (closed form)."""
    q = np.abs(points) - half
    outside = np.linalg.norm(np.maximum(q, 0), axis=-1)
    return outside + np.minimum(q.max(axis=-1), 0)


@pytest.mark.parametrize("open_face", [False, True])
def test_cube_sdf_matches_the_closed_form(tmp_path, capsys, open_face):
    faces = CUBE_F[2:] if open_face else CUBE_F
    write_obj(tmp_path / "cube.obj", CUBE_V * 3.0, faces)
    ingest(tmp_path / "cube.obj", tmp_path / "cube.zarr", resolution=21, dtype="float32")
    array, spec = open_signal(tmp_path / "cube.zarr")
    axis = np.linspace(-1, 1, 21)
    points = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1)
    assert np.allclose(array[..., 0], box_sdf(points, mesh.FIT), atol=1e-5)
    assert ("not watertight" in capsys.readouterr().err) == open_face


def test_holed_torus_sign_agrees_with_the_winding_number(tmp_path, capsys):
    """A torus (not star-shaped: rays cross it four times) with one quad cut out of its surface."""
    vertices, faces = torus_mesh()
    source = write_obj(tmp_path / "torus.obj", vertices, faces[2:])
    ingest(source, tmp_path / "torus.zarr", resolution=24, dtype="float32")
    assert "not watertight" in capsys.readouterr().err
    array, spec = open_signal(tmp_path / "torus.zarr")
    v, f = mesh.parse_obj(source)
    v, f = mesh.close_holes(v, f, mesh.boundary_loops(f)[0])
    v = mesh.normalise(v)[0]
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 24, (300, 3))
    axis = np.linspace(-1, 1, 24)
    winding = np.zeros(len(idx))
    for n, p in enumerate(axis[idx]):  # generalised winding number (Van Oosterom–Strackee solid angles)
        a, b, c = (v[f[:, k]] - p for k in range(3))
        la, lb, lc = (np.linalg.norm(x, axis=1) for x in (a, b, c))
        det = np.einsum("ij,ij->i", a, np.cross(b, c))
        den = la * lb * lc + (a * b).sum(1) * lc + (b * c).sum(1) * la + (c * a).sum(1) * lb
        winding[n] = np.arctan2(det, den).sum() / (2 * np.pi)
    inside = array[..., 0][tuple(idx.T)] < 0
    assert (inside == (np.abs(winding) > 0.5)).mean() >= 0.98
    assert inside.any() and not inside.all()


def test_modality_metrics_on_hand_made_cases():
    t = np.linspace(0, 1, 1000, endpoint=False)
    ref = np.sin(2 * np.pi * 5 * t)
    noise = np.cos(2 * np.pi * 5 * t)  # orthogonal to ref, same power
    assert metrics.si_snr(3.0 * ref + 0.1, ref) > 250  # scale and offset do not count: exact up to rounding
    assert metrics.si_snr(ref + noise, ref) == pytest.approx(0.0, abs=1e-9)
    assert metrics.si_snr(ref + 0.1 * noise, ref) == pytest.approx(20.0, abs=1e-9)
    a, b = np.array([-1.0, -1, 1, 1]), np.array([-1.0, 1, -1, 1])
    assert metrics.occupancy_iou(a, b) == pytest.approx(1 / 3)
    assert metrics.occupancy_iou(np.ones(3), np.ones(3)) == 1.0
    square = np.array([[0.0, 0], [1, 0], [0, 1], [1, 1]])
    assert metrics.chamfer_distance(square, square) == 0.0
    assert metrics.chamfer_distance(square, square + [0, 0.25]) == pytest.approx(0.25)
    assert metrics.chamfer_distance(square[:1], square) == pytest.approx(0.5 * (0 + (0 + 1 + 1 + 2**0.5) / 4))


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png_export_maps_the_whole_value_range_onto_0_to_255(tmp_path, channels):
    """A float16 reconstruction in value_range (-1, 1): -1 ↦ 0, 1 ↦ 255, 0 ↦ 127.5 rounded half
    to even (128), outside the range clipped; an int16 one in its full range likewise."""
    import zarr
    from PIL import Image

    cases = [
        ("float16", (-1.0, 1.0), [-1.0, -0.5, 0.0, 0.5, 1.0, 2.0, -3.0], [0, 64, 128, 191, 255, 255, 0]),
        ("int16", (-32768.0, 32767.0), [-32768, -16384, 0, 32767], [0, 64, 128, 255]),
    ]
    for dtype, value_range, stored, expected in cases:
        values = np.repeat(np.array(stored, dtype=dtype)[None, :, None], channels, axis=-1)
        spec = SignalSpec((1, len(stored)), channels, value_range, IMAGE_DOMAIN, 1, "image")
        recon = tmp_path / f"{dtype}_{channels}.zarr"
        zarr.create_array(store=str(recon), shape=values.shape, dtype=dtype)[...] = values
        run_dir = tmp_path / f"run_{dtype}_{channels}"
        run_dir.mkdir()
        assert export_reconstruction(spec, recon, run_dir) == {}
        png = np.asarray(Image.open(run_dir / "reconstruction.png"))
        assert png.dtype == np.uint8
        assert png.reshape(1, len(stored), channels).tolist() == [[[e] * channels for e in expected]]


def test_audio_through_launch(tmp_path):
    rate, samples = 44100, make_audio(frames=2048)
    clip = tmp_path / "clip.wav"
    audio.write_wav(clip, samples[:, None], rate)
    run_dir = tmp_path / "run"
    code = launch.main(
        ["configs/quickstart.yaml", f"data.path={clip}", f"run.dir={run_dir}", "run.backend=local",
         "train.workers=1", "train.steps=40", "log.every=20", "log.progress=false",
         "model.siren.w0_initial=3000"]
    )  # fmt: skip
    assert code == 0
    final = json.loads((run_dir / "final.json").read_text())
    recon = wavfile.read(run_dir / "reconstruction.wav")[1]
    assert recon.shape == (2048,) and np.isfinite(final["si_snr"])
    assert final["si_snr"] == pytest.approx(metrics.si_snr(recon, samples), abs=0.05)


@pytest.mark.parametrize("sampler", ["evos", "egra", "expansive"])
def test_image_samplers_refuse_audio_before_anything_is_written(tmp_path, capsys, sampler):
    clip = tmp_path / "clip.wav"
    audio.write_wav(clip, make_audio(frames=2048)[:, None], 44100)
    run_dir = tmp_path / "run"
    code = launch.main([f"data.path={clip}", f"run.dir={run_dir}", "run.backend=local",
                        f"sampler.name={sampler}", "train.steps=2", "log.progress=false"])  # fmt: skip
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"error: sampler.name={sampler} works on images (2-D grids); this signal's grid is 2048:"
        " choose another sampler (e.g. nint, uniform, soft)"
    ]
    assert not run_dir.exists()


def test_volume_through_launch_on_two_workers(ray_session, tmp_path):
    run_dir = tmp_path / "run"
    source = write_obj(tmp_path / "torus.obj", *torus_mesh())
    code = launch.main(
        ["configs/quickstart.yaml", f"data.path={source}",
         "data.resolution=20", f"run.dir={run_dir}", "train.workers=2", "train.steps=20", "log.every=10",
         "log.progress=false", "sampler.name=auto"]
    )  # fmt: skip
    assert code == 0
    final = json.loads((run_dir / "final.json").read_text())
    assert (final["sampler"], final["emphasis_power"]) == ("uniform", 1.0)  # settled on every worker
    assert 0.0 <= final["iou"] <= 1.0 and final["chamfer"] > 0
    signal, spec = open_signal(run_dir / "signal.zarr")
    recon, _ = open_signal(run_dir / "reconstruction.zarr")
    assert final["iou"] == pytest.approx(metrics.occupancy_iou(recon[...], signal[...]))
    assert spec.kind == "volume" and spec.grid == (20, 20, 20) and spec.chunk_rows == 1
    assert (run_dir / "reconstruction.obj").stat().st_size > 0 or final["chamfer"] == float("inf")
