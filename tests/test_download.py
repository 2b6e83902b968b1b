"""cat_seg.utils.download and ``ahs-seg convert`` against a local HTTP server on 127.0.0.1.

The server (http.server in a thread) serves a tiny model's official-layout CAT-Seg checkpoint,
the same bytes cut short on the wire (a Content-Length longer than the body: a dropped
connection), and a 404. Nothing leaves the machine: every URL is http://127.0.0.1:<port>/...
"""
import hashlib
import http.server
import json
import threading

import pytest
import torch

from cat_seg.cli import convert, evaluate
from cat_seg.engine import benchmarks
from cat_seg.engine.catseg_checkpoint import ConversionError, fetch_ahs_weights
from cat_seg.utils import download
from helpers.catseg_layout import TINY_YAML, write_catseg_checkpoint
from helpers.logs import cat_seg_logs


class _Files(http.server.BaseHTTPRequestHandler):
    """GET /<name>: ``files[name]``; /cut/<name>: its first half under the full length."""

    files = {}
    requests = []

    def do_GET(self):  # noqa: N802  (http.server's name)
        self.requests.append(self.path)
        name = self.path.strip("/")
        cut = name.startswith("cut/")
        data = self.files.get(name[len("cut/"):] if cut else name)
        if data is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if cut else data)
        self.close_connection = True

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base URL, the served checkpoint's bytes, the tiny model it holds)."""
    folder = tmp_path_factory.mktemp("served")
    model = write_catseg_checkpoint(folder / "model_base.pth", seed=0)
    data = (folder / "model_base.pth").read_bytes()
    _Files.files = {"model_base.pth": data, "owner/repo/resolve/main/model_base.pth": data,
                    "spaces/owner/weights/resolve/v2/model_base.pth": data}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", data, model
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(download.CACHE_ENV, str(folder))
    _Files.requests.clear()
    return folder


def test_download_is_cached_checked_and_recorded(server, cache, caplog):
    base, data, _ = server
    digest = hashlib.sha256(data).hexdigest()
    with cat_seg_logs(caplog):
        path = download.fetch_weights(f"{base}/model_base.pth", sha256=digest, progress=False)
    assert path.startswith(str(cache)) and open(path, "rb").read() == data
    assert open(path + ".sha256").read().split()[0] == digest
    assert f"sha256 {digest}" in caplog.text
    assert [p for p in cache.rglob("*") if ".part" in p.name] == []
    # A second call uses the cached file (the server sees no second request).
    assert download.fetch_weights(f"{base}/model_base.pth", progress=False) == path
    assert _Files.requests == ["/model_base.pth"]


def test_convert_from_a_url_and_from_hugging_face_style_names(server, cache, tmp_path,
                                                              monkeypatch):
    base, data, model = server
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    out = tmp_path / "converted.pth"
    digest = hashlib.sha256(data).hexdigest()
    record = convert.main([f"{base}/model_base.pth", str(out), "--config-file", str(config),
                           "--sha256", digest.upper(), "--no-progress"])
    assert record["sha256"] == digest
    assert json.loads((tmp_path / "converted.pth.source.json").read_text())["sha256"] == digest
    loaded = torch.load(out, weights_only=True)["model"]
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    # hf://owner/repo/file resolves to <endpoint>/owner/repo/resolve/main/file.
    monkeypatch.setattr(download, "HF_ENDPOINT", base)
    convert.main(["hf://owner/repo/model_base.pth", str(tmp_path / "hf.pth"), "--no-progress"])
    assert _Files.requests[-1] == "/owner/repo/resolve/main/model_base.pth"
    # A Space's file at a revision (CAT-Seg publishes its weights in a Space).
    convert.main(["hf://spaces/owner/weights@v2/model_base.pth", str(tmp_path / "space.pth"),
                  "--no-progress"])
    assert _Files.requests[-1] == "/spaces/owner/weights/resolve/v2/model_base.pth"
    # The predictor's entry: the official checkpoint converted once into the cache.
    converted = fetch_ahs_weights(f"{base}/model_base.pth", progress=False)
    assert converted == str(cache / "converted" / f"{digest}.pth")
    assert fetch_ahs_weights(converted) == converted  # already AHS-Seg's layout: as it is


def test_a_download_cut_short_leaves_nothing_behind(server, cache):
    base, _, _ = server
    with pytest.raises(download.DownloadError,
                       match=r"stopped after \d+ of \d+ bytes .*run the command again"):
        download.fetch_weights(f"{base}/cut/model_base.pth", progress=False)
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_a_complete_download_of_a_cut_file_is_named_corrupt(server, cache, tmp_path):
    base, data, _ = server
    _Files.files["half.pth"] = data[: len(data) // 2]
    with pytest.raises(ConversionError, match="not a complete checkpoint file.*removed from the "
                       "cache: run the command again"):
        convert.main([f"{base}/half.pth", str(tmp_path / "x.pth"), "--no-progress"])
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_a_wrong_checksum_stops_with_both_values_and_drops_the_file(server, cache, tmp_path):
    base, data, _ = server
    wrong = "0" * 64
    actual = hashlib.sha256(data).hexdigest()
    with pytest.raises(download.ChecksumError, match=f"sha256 {actual}, not the expected {wrong}"):
        convert.main([f"{base}/model_base.pth", str(tmp_path / "x.pth"), "--sha256", wrong,
                      "--no-progress"])
    assert not (tmp_path / "x.pth").exists()
    assert [p for p in cache.rglob("*.pth")] == []
    with pytest.raises(ValueError, match="not a sha256"):
        download.fetch_weights(f"{base}/model_base.pth", sha256="abc")


def test_missing_files_and_unknown_sources_fail_clearly(server, cache, tmp_path):
    base, _, _ = server
    with pytest.raises(download.DownloadError, match="answered 404"):
        download.fetch_weights(f"{base}/nope.pth", progress=False)
    with pytest.raises(FileNotFoundError, match="weights file .*nope.pth does not exist"):
        download.fetch_weights(str(tmp_path / "nope.pth"))
    with pytest.raises(ValueError, match="only local files, http"):
        download.fetch_weights("s3://bucket/model.pth")
    with pytest.raises(ValueError, match="hf://owner/name/file"):
        download.fetch_weights("hf://owner/model.pth")


def test_a_changed_cache_entry_is_downloaded_again(server, cache):
    base, data, _ = server
    path = download.fetch_weights(f"{base}/model_base.pth", progress=False)
    with open(path, "r+b") as f:
        f.truncate(100)
    assert open(download.fetch_weights(f"{base}/model_base.pth", progress=False), "rb").read() \
        == data
    assert _Files.requests == ["/model_base.pth", "/model_base.pth"]


def test_eval_takes_the_official_checkpoint_by_its_url(server, cache, tmp_path, monkeypatch):
    base, data, _ = server
    monkeypatch.setattr(benchmarks, "launch_evaluation", lambda args: args)  # no evaluation
    args = evaluate.main(["--config-file", "configs/synthetic/quickstart.yaml", "--weights",
                          f"{base}/model_base.pth", "--output", str(tmp_path / "eval")])
    digest = hashlib.sha256(data).hexdigest()
    assert args.weights == str(cache / "converted" / f"{digest}.pth")
    assert args.config_file.endswith("configs/synthetic/quickstart.yaml")
