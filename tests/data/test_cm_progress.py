"""The lepton-cm fit reports its progress (predicted seconds, rising to the total) to a callback and a bar,
on the caller's thread, without changing the model; quiet mode prints nothing."""

import io
import threading

from rich.console import Console

from lepton.data.codecs import cm_model, fit_codec
from lepton.data.codecs.cm import CMCodec
from lepton.data.store import open_store, pack_dataset
from lepton.utils.progress import fit_task, progress_bar


def test_cm_fit_reports_monotone_progress_to_its_total_and_fits_the_same_model(mnist):
    images = mnist.x_train[:200].reshape(-1, 28, 28)
    calls = []
    fitted = cm_model.fit(
        images,
        leaves=128,
        min_leaf=50,
        max_fit_pixels=40_000,
        progress=lambda done, total: calls.append((done, total, threading.get_ident())),
    )
    assert len(calls) >= 18  # after the features and pilot, after the tree, and after each of 16 chunks counted
    (total,) = {t for _, t, _ in calls}
    dones = [d for d, _, _ in calls]
    assert all(a <= b for a, b in zip(dones, dones[1:])) and 0 < dones[0] < total and dones[-1] == total
    assert {ident for _, _, ident in calls} == {threading.get_ident()}  # never from the tree's worker thread
    quiet = cm_model.fit(images, leaves=128, min_leaf=50, max_fit_pixels=40_000)
    assert fitted.to_bytes() == quiet.to_bytes()  # the pilot and the chunked counting change nothing


def test_a_bar_shows_the_fit_as_its_own_task_until_it_ends(mnist):
    images = mnist.x_train[:300]
    seen = []
    with progress_bar(Console(file=io.StringIO(), force_terminal=True), enabled=True) as bar:
        show = fit_task(bar, "fit the codec of")

        def spy(done, total):
            show("images", done, total)
            seen.append([(t.description, t.completed, t.total) for t in bar.tasks])

        codec = fit_codec(CMCodec(leaves=64, fit_pixels=60_000), images, progress=spy)
        assert codec.model and bar.tasks == []  # removed when the fit ended
    shown = [s[0] for s in seen if s]
    assert seen[: len(shown)] == [[s] for s in shown] and seen[-1] == []  # shown from the first call to the end
    assert {d for d, _, _ in shown} == {"fit the codec of images"} and len(shown) >= 2
    assert all(0 < done <= total for _, done, total in shown)


def test_quiet_pack_prints_nothing_and_reports_only_the_learned_codec(mnist, tmp_path, capsys):
    data = mnist.subset(300, 100)
    out = io.StringIO()
    fits = []
    with progress_bar(Console(file=out, force_terminal=True), enabled=False) as bar:  # --quiet
        show = fit_task(bar, "fit the codec of")
        pack_dataset(
            data,
            tmp_path / "d.lds",
            image_codec=CMCodec(leaves=64, fit_pixels=60_000),
            block_samples=150,
            fit_progress=lambda field, done, total: (fits.append((field, done, total)), show(field, done, total)),
        )
    assert out.getvalue() == "" and capsys.readouterr() == ("", "")
    assert {f for f, _, _ in fits} == {"images"}  # the labels' codec learns nothing; the test split reuses the fit
    assert fits[-1][1] == fits[-1][2]
    assert open_store(tmp_path / "d.lds").split("train").samples == 300
