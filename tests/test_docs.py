"""The documentation: the README stays short, the site builds with `mkdocs build --strict` (a broken link or a
missing page fails), the generated pages list every name the code allows, and every `zoomdream` command shown
in a code block of README.md or docs/*.md passes its up-front checks (`--check`, which stops before the model
loads), so documented commands never rot."""
from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import wave
from dataclasses import fields
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import answers, free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^ *```([a-z]*)\n(.*?)^ *```", re.M | re.S)
SHELL = ("", "bash", "sh", "shell", "console")
IMAGES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
AUDIO = (".wav", ".mp3", ".flac", ".ogg", ".m4a", ".aac")
CHECKED = ("image", "zoom", "video", "interpolate", "render", "curves", "live")  # the commands that take --check


def documented_commands() -> list[tuple[str, str]]:
    """(where, command) for every `zoomdream ...` in a shell code block: continuation lines joined, comments
    dropped, `a && b` split, leading VAR=value settings skipped."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            if match.group(1) not in SHELL:
                continue
            line_no = text[: match.start()].count("\n") + 2
            body = re.sub(r"\\\n\s*", " ", match.group(2))
            for offset, line in enumerate(body.splitlines()):
                words = shlex.split(line.strip().removeprefix("$ "), comments=True)
                command: list[str] = []
                for word in [*words, "&&"]:
                    if word in ("&&", ";", "||"):
                        while command and re.fullmatch(r"[A-Z_]+=\S*", command[0]):
                            command.pop(0)
                        if command[:1] == ["zoomdream"]:
                            found.append((f"{page.relative_to(ROOT)}:{line_no + offset}", shlex.join(command)))
                        command = []
                    else:
                        command.append(word)
    return found


COMMANDS = documented_commands()


def test_the_extractor_finds_commands_in_every_form(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text("text `zoomdream inline` is not run\n```bash\npip install . && zoomdream image a.png -o b.png\n"
                    "zoomdream zoom --noise \\\n  -o c.mp4   # a comment\nKERAS_BACKEND=jax zoomdream models\n```\n"
                    "```toml\nzoomdream = 1\n```\n")
    monkeypatch.setattr(sys.modules[__name__], "PAGES", [page])
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert [c for _, c in documented_commands()] == ["zoomdream image a.png -o b.png",
                                                     "zoomdream zoom --noise -o c.mp4", "zoomdream models"]


def test_readme_is_short_and_keeps_the_two_set_up_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= 8 * 1024
    assert "pip install . && zoomdream image samples/chelsea.png -o dream.png" in text
    assert "(command -v chromium >/dev/null || apt-get install -y chromium) && pip install '.[test]' && pytest" in text
    assert len([c for w, c in COMMANDS if w.startswith("README")]) >= 5
    targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in t]
    assert targets and [t for t in targets if not (ROOT / t).exists()] == []  # mkdocs does not check the README


def stand_in(path: Path) -> None:
    """A small file of the kind a documented command reads, where the page names one the repository lacks
    (a user's photo, clip, track or job file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix in IMAGES:
        cv2.imwrite(str(path), cv2.resize(cv2.imread(str(ROOT / "samples" / "chelsea.png")), (64, 48)))
    elif suffix in AUDIO:
        with wave.open(str(path.with_suffix(".wav")) if suffix != ".wav" else str(path), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(22050)
            t = np.arange(22050 * 30) / 22050  # 30 s: long enough for the ranges the pages pick
            w.writeframes((np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2").tobytes())
        if suffix != ".wav":
            path.with_suffix(".wav").rename(path)  # ffmpeg reads by content, whatever the name says
    elif suffix == ".toml":
        path.write_text(f'command = "zoom"\nnoise = true\nsize = "64x64"\nframes = 2\noutput = "{path.stem}.mp4"\n')
    else:  # a clip: .mp4, .webm, .mov, .mkv, ...
        shutil.copyfile(ROOT / "tests" / "data" / "example.mp4", path)


def inputs_of(argv: list[str]) -> list[str]:
    """The files a command line reads: its input, guide, audio, weights or job files."""
    from zoomdream.cli import build_parser

    args = build_parser().parse_args(argv)
    if args.command == "curves":
        render = args.render if not args.render or not args.render[0].endswith(".toml") else ["render", *args.render]
        return inputs_of(render) if render else []
    named = [getattr(args, name, None) for name in ("input", "guide", "audio", "weights")]
    live = ("://", "/dev/")  # a live source's URL or camera, and live --audio mic or source: --check opens none
    return [p for p in [*named, *getattr(args, "job_file", [])]
            if p and p not in ("random", "mic", "source") and not (p.isdigit() or any(m in p for m in live))]


@pytest.mark.parametrize("where,command", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_documented_command_passes_its_checks(where, command, tmp_path, monkeypatch, capsys):
    from zoomdream.cli import build_parser, main

    for name in ("samples", "tests", "scripts"):
        os.symlink(ROOT / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    argv = []
    for word in shlex.split(command)[1:]:
        if re.fullmatch(r"[\w./-]*[*?][\w./*?-]*\.[a-z0-9]+", word):  # a shell glob of files (jobs/*.toml)
            if not glob.glob(word):
                stand_in(Path(re.sub(r"[*?]", "a", word)))
            argv += sorted(glob.glob(word))
        else:
            argv.append(word)
    if argv[0] not in CHECKED:  # models, studio: the command line parses
        build_parser().parse_args(argv)
        return
    for path in inputs_of(argv):
        if not Path(path).exists():
            stand_in(Path(path))
    before = files_under(tmp_path)
    code = main([*argv, "--check"])
    assert code == 0, f"{where}: {command}\n{capsys.readouterr().err}"
    assert "checked" in capsys.readouterr().err
    assert files_under(tmp_path) == before, "--check wrote something"


def files_under(folder: Path) -> set[str]:
    return {os.path.join(d, name) for d, dirs, names in os.walk(folder) for name in dirs + names}


def test_check_stops_a_bad_command_with_its_one_line_error(tmp_path, capsys):
    from zoomdream.cli import main

    assert main(["zoom", "--noise", "-o", str(tmp_path / "z.mp4"), "--zoom", "0:(1.02", "--check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoomdream: error: --zoom: unclosed '('") and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


def test_generated_tables_list_every_name_the_code_allows():
    """The hook the site is built with: every Job field, every function and variable of the expressions."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import mkdocs_hooks
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    from zoomdream.audio import NAMES
    from zoomdream.config import Job
    from zoomdream.schedules import CONSTANTS, FUNCTIONS

    keys = mkdocs_hooks.job_keys()
    assert [f.name for f in fields(Job)] == re.findall(r"^\| `([a-z_0-9]+)` \|", keys, re.M)
    functions = mkdocs_hooks.schedule_functions()
    assert [*FUNCTIONS, "smooth"] == re.findall(r"^\| `([a-z_0-9]+)` \|", functions, re.M)
    variables = mkdocs_hooks.schedule_variables()
    assert ["t", *CONSTANTS, *NAMES] == re.findall(r"^\| `([a-z_0-9]+)` \|", variables, re.M)
    page = (ROOT / "docs" / "job-files.md").read_text() + (ROOT / "docs" / "schedules.md").read_text()
    for marker in mkdocs_hooks.GENERATORS:
        assert f"<!-- generated: {marker} -->" in page


def build_site(target: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(target)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)})


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """The site, built once with `mkdocs build --strict` (skipped only where the docs extra is absent)."""
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install '.[docs]'")
    pytest.importorskip("material", reason="the docs extra is not installed: pip install '.[docs]'")
    pytest.importorskip("mkdocstrings", reason="the docs extra is not installed: pip install '.[docs]'")
    target = tmp_path_factory.mktemp("site")
    built = build_site(target)
    assert built.returncode == 0, built.stderr[-4000:]
    return target


def test_site_builds_strict_with_every_page(site):
    import yaml

    def pages(nav):
        for item in nav:
            for value in item.values():
                yield from pages(value) if isinstance(value, list) else [value]

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    listed = set(pages(nav))
    assert listed == {p.name for p in (ROOT / "docs").glob("*.md")}, "every page in the nav, and no missing page"
    for page in listed:
        html = site / ("index.html" if page == "index.md" else page.removesuffix(".md") + "/index.html")
        assert html.is_file(), page
    job_page = (site / "job-files" / "index.html").read_text()
    from zoomdream.config import Job

    for f in fields(Job):
        assert f"<code>{f.name}</code>" in job_page, f.name
    assert "zoomdream.runner.render" in (site / "api" / "index.html").read_text()  # mkdocstrings ran


def test_strict_build_fails_on_a_broken_link(tmp_path):
    """The build the suite runs would catch a dead link (the check above can fail)."""
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install '.[docs]'")
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copytree(ROOT / "scripts", copy / "scripts")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    os.symlink(ROOT / "zoomdream", copy / "zoomdream")
    (copy / "docs" / "music.md").write_text((copy / "docs" / "music.md").read_text() + "\n[gone](no-such-page.md)\n")
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "s")],
                           cwd=copy, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode != 0 and "no-such-page.md" in built.stderr


@pytest.fixture
def served(site):
    """The built site on a local `python -m http.server` (loopback only), as a reader's browser gets it."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(site)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/"), seconds=60, what="the site's server")
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_site_opens_in_chromium_with_search_and_gallery_images(served):
    """Debian's Chromium through Playwright (never a downloaded browser): the search finds the music page,
    and every picture of the gallery is decoded. A screenshot is kept in test-artifacts/docs-gallery.png."""
    pytest.importorskip("playwright.sync_api")
    from test_studio_browser import chromium_page

    with chromium_page(served) as page:
        page.keyboard.press("/")  # Material's shortcut: focus the search box
        page.wait_for_function(  # its index is built in a web worker: typed before, a query is not run
            "document.querySelector('.md-search-result__meta').textContent.includes('Type to start')", timeout=60_000)
        page.locator("input.md-search__input").press_sequentially("kick drum onset", delay=20)
        page.wait_for_selector(".md-search-result__item", timeout=30_000)
        links = page.eval_on_selector_all(".md-search-result__item a", "items => items.map(a => a.href)")
        assert any("/music/" in link for link in links), links
        page.goto(served + "gallery/")
        page.wait_for_load_state("load")
        images = page.eval_on_selector_all(
            "article img", "items => items.map(i => ({src: i.src, complete: i.complete, width: i.naturalWidth}))")
        assert len(images) == (ROOT / "docs" / "gallery.md").read_text().count("![") >= 5, images
        assert all(i["complete"] and i["width"] > 0 for i in images), [i for i in images if not i["width"]]
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "docs-gallery.png"), full_page=True)
