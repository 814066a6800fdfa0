"""Seed 004 in a real browser: headless Chromium (Debian's package, scripts/bootstrap installs it)
driven by Playwright for Python against the real stack (Redis with ACLs, SeaweedFS with IAM, the
orchestrator serving the console).

One stack and one browser for the module; the flow runs as a person would: sign in with an API
key, create an agent, open it, toggle its workspace on, upload a file in the Files tab and see it
through the agent file API, open, rename and download it, make a folder, switch to custom S3 with
a key that lacks DeleteObject and read the named missing permission, delete the agent. Each page
is screenshot; with ``ARTIFACTS_CONSOLE_SHOTS=1`` the shots replace docs/console/*.png (the README
and docs/console.md show them), otherwise they go to a temporary directory, so an ordinary run
leaves the tree clean (agent ids and times differ on every run).
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from orchestrator_stack import ADMIN_TOKEN, CUSTOM_BUCKET, s3_identity

pytestmark = [pytest.mark.redis, pytest.mark.s3, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DOCS_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
SHOTS_ENV = "ARTIFACTS_CONSOLE_SHOTS"
#: Flags for a root user in a container without a display; nothing reaches the network.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
#: Playwright's own wait bound per step (ms): pages answer in milliseconds; the bound covers a
#: loaded 2-core machine formatting a workspace.
STEP_MS = 30_000


def call(url: str, method: str, path: str, body=None, key: str = "") -> dict:
    req = urllib.request.Request(url + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is missing: scripts/bootstrap installs Debian's chromium package")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where the page screenshots go: docs/console when asked (module note), else a temp dir."""
    return DOCS_SHOTS if os.environ.get(SHOTS_ENV) == "1" else tmp_path_factory.mktemp("console-shots")


@pytest.fixture(scope="module")
def account(stack):
    new = call(stack["server"].url, "POST", "/admin/accounts", {"handle": "console-user"}, ADMIN_TOKEN)
    return new["key"]["key"]


@pytest.fixture
def page(browser, stack):
    context = browser.new_context(viewport={"width": 1100, "height": 820}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(STEP_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield pg
    context.close()
    assert not [e for e in errors if "status of 4" not in e], errors  # 4xx answers the page handles are fine


def shot(pg, into: Path, name: str) -> None:
    into.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(into / f"{name}.png"), full_page=True)
    assert (into / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def sign_in(pg, url: str, key: str) -> None:
    pg.goto(url + "/")
    pg.get_by_label("API key").fill(key)
    pg.get_by_role("button", name="Sign in").click()
    pg.get_by_role("heading", name="Agents").wait_for()


def test_seed_004_in_the_browser(page, stack, account, shots, tmp_path):
    url = stack["server"].url
    pg = page
    pg.goto(url + "/")
    assert pg.url.endswith("/console/#/signin") or pg.url.endswith("/console/")
    pg.get_by_label("API key").wait_for()
    shot(pg, shots, "sign-in")
    pg.get_by_label("API key").fill("tbo_" + "x" * 32)
    pg.get_by_role("button", name="Sign in").click()
    assert "not accepted" in pg.get_by_role("alert").inner_text()
    sign_in(pg, url, account)

    # create an agent; it opens on its Workspace tab, workspace off
    pg.get_by_label("New agent name").fill("Support bot")
    pg.get_by_role("button", name="Create agent").click()
    pg.get_by_role("heading", name="Support bot").wait_for()
    toggle = pg.get_by_role("switch", name="Workspace")
    assert toggle.get_attribute("aria-checked") == "false"

    # Workspace tab -> toggle on: managed, no credentials asked
    toggle.click()
    pg.get_by_text("On: managed storage").wait_for()
    assert pg.get_by_role("switch", name="Workspace").get_attribute("aria-checked") == "true"
    agent_id = pg.url.split("/agents/")[1].split("/")[0]
    assert f"agents/{agent_id}/" in pg.locator("#workspace-state").inner_text()
    shot(pg, shots, "workspace-managed")

    # Files tab: upload a file, see it listed, open it
    pg.get_by_role("tab", name="Files").click()
    pg.get_by_text("This folder is empty.").wait_for()
    note = tmp_path / "notes.md"
    note.write_text("# Notes\nwritten from the console\n")
    pg.get_by_label("Upload files").set_input_files(str(note))
    pg.get_by_role("link", name="notes.md").wait_for()
    # ... and the agent sees it through its file API, with an agent token
    token = call(url, "POST", f"/agents/{agent_id}/tokens", {"name": "runtime"}, account)["token"]
    read = call(url, "POST", f"/agents/{agent_id}/files/readFile", {"path": "notes.md"}, token)
    assert read["content"] == "# Notes\nwritten from the console\n"
    # the agent writes too, and the console shows it
    call(url, "POST", f"/agents/{agent_id}/files/writeFile", {"path": "outputs/report.txt", "content": "done"}, token)
    pg.get_by_label("Folder name").fill("drafts")
    pg.get_by_role("button", name="New folder").click()
    pg.get_by_role("link", name="drafts/").wait_for()
    pg.get_by_role("link", name="outputs/").wait_for()
    shot(pg, shots, "files")

    pg.get_by_role("link", name="notes.md").click()
    content = pg.get_by_label("Contents of notes.md")
    assert content.input_value() == "# Notes\nwritten from the console\n"
    content.fill("# Notes\nedited in the console\n")
    pg.get_by_role("button", name="Save").click()
    pg.get_by_text("Saved notes.md.").wait_for()
    shot(pg, shots, "file-open")
    assert call(url, "POST", f"/agents/{agent_id}/files/readFile", {"path": "notes.md"}, token)["content"] \
        == "# Notes\nedited in the console\n"
    with pg.expect_download() as dl:
        pg.get_by_role("button", name="Download").click()
    assert Path(dl.value.path()).read_text() == "# Notes\nedited in the console\n"
    pg.get_by_role("link", name="← Back to the folder").click()

    # rename and delete, with the same sandbox rules as the agent
    pg.get_by_role("button", name="Rename notes.md").click()
    pg.get_by_label("New name for notes.md").fill("../escape.md")
    pg.get_by_role("button", name="Save new name").click()
    assert "escapes the workspace root" in pg.get_by_role("alert").inner_text()
    pg.get_by_label("New name for notes.md").fill("notes-renamed.md")
    pg.get_by_role("button", name="Save new name").click()
    pg.get_by_role("link", name="notes-renamed.md").wait_for()
    pg.get_by_role("button", name="Delete drafts").click()
    pg.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    pg.get_by_role("link", name="drafts/").wait_for(state="detached")
    assert call(url, "POST", f"/agents/{agent_id}/files/exists", {"path": "notes-renamed.md"}, token)["exists"]

    # usage on the Workspace tab
    pg.get_by_role("tab", name="Workspace").click()
    assert pg.locator("#usage-bytes").inner_text() != "0 B"
    # recent activity from the workspace journal: the rename just made, by the path it has now
    activity = pg.locator("#activity")
    activity.get_by_role("cell", name="/notes-renamed.md").first.wait_for()
    assert activity.get_by_role("cell", name="rename").count() >= 1

    # switch to custom S3 with a key that lacks DeleteObject: the missing permission is named
    stack["s3"].create_bucket(CUSTOM_BUCKET)
    ak, sk = s3_identity(stack, "console-nodelete", ["s3:GetObject", "s3:PutObject", "s3:ListBucket"])
    pg.get_by_role("radio", name="Custom S3").check()
    pg.get_by_role("textbox", name="Endpoint").fill(stack["s3"].endpoint)
    pg.get_by_role("textbox", name="Region").fill("us-east-1")
    pg.get_by_role("textbox", name="Bucket").fill(CUSTOM_BUCKET)
    pg.get_by_role("textbox", name="Access key ID").fill(ak)
    pg.get_by_label("Secret access key").fill(sk)
    pg.get_by_role("button", name="Save and use this bucket").click()
    missing = pg.locator("#missing-permissions")
    missing.wait_for()
    assert missing.inner_text().strip() == "s3:DeleteObject"
    assert "Check failed" in pg.locator("#check-result").inner_text()
    pg.locator("#policy").evaluate("el => el.closest('details').open = true")
    shot(pg, shots, "custom-s3-missing-permission")
    # nothing changed: still managed, the file still there
    view = call(url, "GET", f"/agents/{agent_id}", key=account)
    assert view["workspace"]["storage"] == "managed"
    assert sk not in pg.content()

    # the agents list, then delete the agent (and its workspace)
    pg.get_by_role("link", name="← Agents").click()
    pg.get_by_role("link", name="Support bot").wait_for()
    shot(pg, shots, "agents")
    pg.get_by_role("link", name="Support bot").click()
    pg.get_by_role("button", name="Delete agent").click()
    dialog = pg.get_by_role("dialog")
    assert dialog.get_by_label("Also delete its workspaces").is_checked()
    dialog.get_by_role("button", name="Confirm").click()
    pg.get_by_text("No agents yet.").wait_for()
    assert "deleted" in pg.get_by_role("status").inner_text()
    req = urllib.request.Request(f"{url}/agents/{agent_id}/files/exists", method="POST",
                                 data=b'{"path": "x"}', headers={"Authorization": f"Bearer {token}"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 401


def test_console_pages_are_accessible_and_locked_down(page, stack, account):
    """Every form control has a label, the page has one h1 and landmarks, keyboard focus starts in
    the form, and the answers carry the security headers."""
    url = stack["server"].url
    resp = page.goto(url + "/console/")
    headers = resp.headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    sign_in(page, url, account)
    call(url, "POST", "/agents", {"name": "<img src=x onerror=alert(1)>"}, account)
    page.reload()
    link = page.get_by_role("link", name="<img src=x onerror=alert(1)>")
    link.wait_for()  # shown as text, never as markup
    assert page.locator("main img").count() == 0
    link.click()
    page.get_by_role("switch", name="Workspace").wait_for()
    unlabeled = page.evaluate("""() => [...document.querySelectorAll('input, textarea, select')]
        .filter(el => el.type !== 'hidden' && !el.labels?.length && !el.getAttribute('aria-label'))
        .map(el => el.outerHTML)""")
    assert unlabeled == []
    assert page.locator("h1").count() == 1
    assert page.locator("main").count() == 1 and page.locator("header").count() == 1
    page.reload()
    page.get_by_role("switch", name="Workspace").wait_for()
    page.keyboard.press("Tab")  # the first stop skips to the content
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


def test_local_login_link_signs_in_once_and_sign_out_revokes_its_key(page, stack, account):
    """``artifacts console`` (Artifacts.console_link): a one-time link; the page trades it for a key
    of its own, drops it from the address bar, and revokes that key on sign-out."""
    from artifacts_orchestrator.client import Artifacts

    link = Artifacts(account, base_url=stack["server"].url).console_link()
    page.goto(link["url"])
    page.get_by_role("heading", name="Agents").wait_for()
    assert "code=" not in page.url
    key = page.evaluate("sessionStorage.getItem('artifacts.apiKey')")
    assert key.startswith("tbo_") and key != account
    assert call(stack["server"].url, "GET", "/whoami", key=key)["key"]["name"] == "console"
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("API key").wait_for()
    with pytest.raises(urllib.error.HTTPError) as e:
        call(stack["server"].url, "GET", "/whoami", key=key)
    assert e.value.code == 401
    page.goto(link["url"])  # used once already
    assert "used or has expired" in page.get_by_role("alert").inner_text()
