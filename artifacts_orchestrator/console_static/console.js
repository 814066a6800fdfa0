// The Artifacts web console (docs/console.md): one script, no framework, no build step.
// It calls the orchestrator's HTTP API with the API key signed in with (sessionStorage: this tab
// only). Every text reaching the page goes through textContent (no innerHTML), so names and file
// contents can never become markup.
"use strict";

const KEY = "artifacts.apiKey";
const MAX_UPLOAD = 32 * 1024 * 1024;   // the agent API's write limit (docs/agentfs.md)
const READ_CHUNK = 1024 * 1024;        // readFile returns at most 1 MiB per call
const POLICY_ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"];

// -- small helpers ----------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < units.length - 1);
  return `${n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

function when(t) { return t ? new Date(typeof t === "number" ? t * 1000 : t).toLocaleString() : ""; }

function flash(message, ok) {
  const el = document.getElementById("flash");
  el.textContent = message;
  el.className = ok ? "flash ok" : "flash";
  el.setAttribute("role", ok ? "status" : "alert");
  el.hidden = !message;
}

class Failure extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status; this.body = body || {};
    this.code = this.body.code;
  }
}

async function api(method, path, body) {
  const headers = { "Authorization": `Bearer ${sessionStorage.getItem(KEY) || ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await resp.json(); } catch (_) { data = null; }
  if (resp.status === 401 && !path.startsWith("/whoami")) { signOut("Your session ended: sign in again."); }
  if (!resp.ok) throw new Failure(resp.status, data);
  return data;
}

const fileOp = (agentId, tool, args) => api("POST", `/agents/${encodeURIComponent(agentId)}/files/${tool}`, args);

function busy(button, fn) {
  return async (ev) => {
    if (ev) ev.preventDefault();
    button.disabled = true;
    try { await fn(); } catch (e) { flash(e.message); } finally { button.disabled = false; }
  };
}

function confirmDialog(title, body) {
  const dlg = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  const slot = document.getElementById("confirm-body");
  slot.replaceChildren(...[].concat(body));
  dlg.returnValue = "";
  dlg.showModal();
  return new Promise((resolve) => dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true }));
}

function show(...nodes) {
  const main = document.getElementById("main");
  main.replaceChildren(...nodes);
  const first = main.querySelector("h1");
  if (first) document.title = `${first.textContent} – Artifacts console`;
}

function signOut(message) {
  const linked = sessionStorage.getItem(KEY + ".linkedKeyId");  // a key made by a sign-in link: revoke it
  if (linked && sessionStorage.getItem(KEY)) {
    fetch(`/keys/${encodeURIComponent(linked)}`, { method: "DELETE",
      headers: { "Authorization": `Bearer ${sessionStorage.getItem(KEY)}` } }).catch(() => {});
  }
  sessionStorage.removeItem(KEY + ".linkedKeyId");
  sessionStorage.removeItem(KEY);
  pending = message ? { message, ok: false } : null;
  if (location.hash === "#/signin") render(); else location.hash = "#/signin";
}

// -- routing ----------------------------------------------------------------------------------------

let pending = null;  // a message for the next page (set just before changing location.hash)

async function render() {
  flash(pending ? pending.message : "", pending && pending.ok);
  pending = null;
  const [path, query] = (location.hash.slice(1) || "/agents").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  const signedIn = !!sessionStorage.getItem(KEY);
  document.getElementById("nav").hidden = !signedIn;
  if (!signedIn || parts[0] === "signin") return renderSignIn();
  try {
    if (parts[0] === "agents" && parts[1]) return await renderAgent(parts[1], parts[2] || "workspace", params);
    return await renderAgents();
  } catch (e) {
    show(h("h1", {}, "Something went wrong"), h("p", {}, e.message));
  }
}

// -- sign in ----------------------------------------------------------------------------------------

function renderSignIn() {
  const input = h("input", { type: "password", id: "apikey", name: "apikey", autocomplete: "off",
                             required: true, "aria-describedby": "apikey-help", spellcheck: "false" });
  const button = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h("form", { class: "panel", "aria-labelledby": "signin-title" },
    h("label", { for: "apikey" }, "API key"), input,
    h("p", { id: "apikey-help", class: "muted" },
      "A key like tbo_…; it stays in this tab only. On a machine where the CLI is logged in (",
      h("code", {}, "artifacts up"), " does it), ", h("code", {}, "artifacts console"),
      " prints a one-time link that signs you in without one."),
    h("div", { class: "row" }, button));
  form.addEventListener("submit", busy(button, async () => {
    sessionStorage.setItem(KEY, input.value.trim());
    try {
      const me = await api("GET", "/whoami");
      sessionStorage.setItem(KEY + ".handle", me.account.handle);
      location.hash = "#/agents";
    } catch (e) {
      sessionStorage.removeItem(KEY);
      throw new Error(e.status === 401 ? "That API key was not accepted." : e.message);
    }
  }));
  show(h("h1", { id: "signin-title" }, "Sign in"), form);
  input.focus();
}

// -- the agents list --------------------------------------------------------------------------------

async function renderAgents() {
  const { agents } = await api("GET", "/agents");
  document.getElementById("who").textContent = sessionStorage.getItem(KEY + ".handle") || "";
  const name = h("input", { type: "text", id: "new-agent", required: true, maxlength: 100 });
  const create = h("button", { type: "submit", class: "primary" }, "Create agent");
  const form = h("form", { class: "panel", "aria-label": "Create an agent" },
    h("label", { for: "new-agent" }, "New agent name"), name, h("div", { class: "row" }, create));
  form.addEventListener("submit", busy(create, async () => {
    const agent = await api("POST", "/agents", { name: name.value });
    location.hash = `#/agents/${agent.id}/workspace`;
  }));
  const rows = agents.map((a) => h("tr", {},
    h("td", {}, h("a", { href: `#/agents/${a.id}/workspace` }, a.name)),
    h("td", {}, h("code", {}, a.id)),
    h("td", {}, a.workspace_enabled ? h("span", { class: "badge on" }, `On · ${a.workspace.storage === "managed" ? "Managed" : "Custom S3"}`)
                                    : h("span", { class: "badge" }, "Off")),
    h("td", {}, when(a.created_at))));
  show(h("h1", {}, "Agents"),
    agents.length ? h("table", {}, h("caption", { class: "muted" }, `${agents.length} agent(s)`),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Id"),
        h("th", { scope: "col" }, "Workspace"), h("th", { scope: "col" }, "Created"))), h("tbody", {}, rows))
      : h("p", { class: "muted" }, "No agents yet."),
    form);
}

// -- one agent --------------------------------------------------------------------------------------

const TABS = [["workspace", "Workspace"], ["files", "Files"], ["tokens", "Tokens"]];

async function renderAgent(id, tab, params) {
  const agent = await api("GET", `/agents/${encodeURIComponent(id)}`);
  const tabs = h("div", { role: "tablist", "aria-label": "Agent" }, TABS.map(([key, label]) =>
    h("a", { role: "tab", id: `tab-${key}`, href: `#/agents/${id}/${key}`, "aria-selected": String(tab === key),
             "aria-controls": "tabpanel" }, label)));
  const panel = h("section", { role: "tabpanel", id: "tabpanel", "aria-labelledby": `tab-${tab}` });
  const rename = h("button", { type: "button", class: "link" }, "Rename agent");
  rename.addEventListener("click", () => renameForm(agent, rename));
  show(h("p", {}, h("a", { href: "#/agents" }, "← Agents")),
       h("h1", {}, agent.name), h("p", { class: "muted" }, "Agent ", h("code", {}, agent.id), " · ", rename),
       tabs, panel);
  if (tab === "files") return renderFiles(agent, panel, params.get("path") || "", params.get("open"));
  if (tab === "tokens") return renderTokens(agent, panel);
  return renderWorkspace(agent, panel);
}

function renameForm(agent, anchor) {
  const input = h("input", { type: "text", id: "rename", value: agent.name, maxlength: 100, required: true });
  const save = h("button", { type: "submit", class: "primary" }, "Save name");
  const form = h("form", { class: "panel" }, h("label", { for: "rename" }, "Agent name"), input, h("div", { class: "row" }, save));
  form.addEventListener("submit", busy(save, async () => {
    await api("PATCH", `/agents/${agent.id}`, { name: input.value });
    render();
  }));
  anchor.closest("p").after(form);
  input.focus();
}

// -- the Workspace tab ------------------------------------------------------------------------------

async function renderWorkspace(agent, panel) {
  const ws = agent.workspace;
  const on = agent.workspace_enabled;
  const toggle = h("button", { type: "button", role: "switch", class: "switch", id: "workspace-toggle",
                               "aria-checked": String(on), "aria-describedby": "workspace-state" },
    h("span", { class: "track", "aria-hidden": "true" }), "Workspace");
  const state = h("p", { id: "workspace-state" }, on
    ? `On: ${ws.storage === "managed" ? "managed storage" : "custom S3"} at ${ws.bucket}/${ws.prefix}/. The agent can use all file operations in every conversation.`
    : ws ? `Off. The files stay in workspace ${ws.name} until that workspace is deleted; turning it on again brings them back.`
         : "Off. Turn it on to give the agent a persistent filesystem: a managed S3 prefix, no credentials needed.");

  const current = ws && ws.storage === "custom" ? "custom" : "managed";
  const radio = (value, label, help) => h("label", { class: "radio" },
    h("input", { type: "radio", name: "provider", value, checked: value === current }),
    h("span", {}, h("strong", {}, label), h("br"), h("span", { class: "muted" }, help)));
  const provider = h("fieldset", {}, h("legend", {}, "Storage provider"),
    radio("managed", "Managed S3", "The platform's bucket, at agents/" + agent.id + "/. No configuration."),
    radio("custom", "Custom S3", "Your own bucket or any S3-compatible service (MinIO, R2, B2, …)."));
  const customForm = customS3Form(agent, ws);
  const selected = () => provider.querySelector("input[name=provider]:checked").value;
  const sync = () => { customForm.hidden = selected() !== "custom"; };
  provider.addEventListener("change", sync);

  toggle.addEventListener("click", busy(toggle, async () => {
    if (on) {
      await api("PUT", `/agents/${agent.id}/workspace`, { enabled: false });
      flash("Workspace turned off. Its files are kept until the workspace is deleted.", true);
    } else if (selected() === "custom") {
      await saveCustom(agent, customForm);
      return;
    } else {
      await api("PUT", `/agents/${agent.id}/workspace`, { enabled: true, storage: "managed" });
      flash("Workspace on: managed storage, no credentials needed.", true);
    }
    await render();
  }));
  const useManaged = h("button", { type: "button", class: "primary", id: "use-managed" }, "Switch to managed storage");
  useManaged.addEventListener("click", busy(useManaged, async () => {
    await api("PUT", `/agents/${agent.id}/workspace`, { enabled: true, storage: "managed" });
    await render();
    flash("The agent now uses managed storage. The custom S3 workspace is kept (below) until you delete it.", true);
  }));
  const managedRow = h("div", { class: "row" }, useManaged);
  const syncManaged = () => { managedRow.hidden = !(on && ws.storage !== "managed" && selected() === "managed"); };
  provider.addEventListener("change", syncManaged);

  panel.append(h("div", { class: "panel" }, h("h2", {}, "Workspace"), toggle, state),
               h("div", { class: "panel" }, provider, managedRow, customForm));
  sync(); syncManaged();
  const usage = agent.workspace ? await api("GET", `/agents/${agent.id}/usage`) : null;
  panel.append(usagePanel(agent, usage), activityPanel(usage), detachedPanel(agent), dangerPanel(agent));
}

function customS3Form(agent, ws) {
  const field = (id, label, help, attrs) => [h("label", { for: id }, label, help ? h("span", { class: "muted" }, ` (${help})`) : ""),
                                             h("input", { id, name: id, ...attrs })];
  const saved = ws && ws.storage === "custom" ? ws : null;
  const form = h("form", { id: "custom-s3", "aria-label": "Custom S3 bucket settings" },
    field("endpoint", "Endpoint", "optional: blank for AWS S3; e.g. https://s3.eu-central-1.wasabisys.com",
          { type: "url", value: saved && !saved.endpoint.endsWith(".amazonaws.com") ? saved.endpoint : "" }),
    field("region", "Region", "required, e.g. us-east-1 or eu-west-2", { type: "text", required: true, value: saved ? saved.region : "" }),
    field("bucket", "Bucket", "required: must already exist", { type: "text", required: true, value: saved ? saved.bucket : "" }),
    field("access_key_id", "Access key ID", saved ? `saved: ${saved.access_key_id}; enter it again to change storage` : "required",
          { type: "text", required: true, autocomplete: "off", spellcheck: "false" }),
    field("secret_access_key", "Secret access key", saved ? `saved: ${saved.secret_access_key}` : "required",
          { type: "password", required: true, autocomplete: "off" }),
    h("details", {}, h("summary", {}, "Required IAM permissions"), h("pre", { id: "policy" })),
    h("div", { class: "row" },
      h("button", { type: "button", id: "check-s3" }, "Check permissions"),
      h("button", { type: "submit", class: "primary", id: "save-s3" }, "Save and use this bucket")),
    h("div", { id: "check-result", role: "status", "aria-live": "polite" }));
  const policy = () => {
    const b = form.querySelector("#bucket").value || "your-bucket-name";
    form.querySelector("#policy").textContent = JSON.stringify({ Effect: "Allow", Action: POLICY_ACTIONS,
      Resource: [`arn:aws:s3:::${b}`, `arn:aws:s3:::${b}/*`] }, null, 2);
  };
  form.querySelector("#bucket").addEventListener("input", policy);
  policy();
  const check = form.querySelector("#check-s3");
  check.addEventListener("click", busy(check, async () => {
    if (!form.reportValidity()) return;
    showCheck(form, await api("POST", `/agents/${agent.id}/storage-check`, customValues(form)));
  }));
  const save = form.querySelector("#save-s3");
  form.addEventListener("submit", busy(save, () => saveCustom(agent, form)));
  return form;
}

function customValues(form) {
  const v = (id) => form.querySelector(`#${id}`).value.trim();
  return { endpoint: v("endpoint"), region: v("region"), bucket: v("bucket"), access_key_id: v("access_key_id"),
           secret_access_key: form.querySelector("#secret_access_key").value };
}

function showCheck(form, check) {
  const out = form.querySelector("#check-result");
  const items = [h("p", {}, h("strong", {}, check.ok ? "Check passed: " : "Check failed: "), check.message)];
  if (check.missing_permissions && check.missing_permissions.length) {
    items.push(h("p", {}, "Missing permissions:"), h("ul", { id: "missing-permissions" },
      check.missing_permissions.map((p) => h("li", {}, h("code", {}, p)))));
  }
  out.replaceChildren(h("div", { class: check.ok ? "check good" : "check bad" }, items));
}

async function saveCustom(agent, form) {
  if (!form.reportValidity()) return;
  try {
    await api("PUT", `/agents/${agent.id}/workspace`, { enabled: true, storage: "custom", custom: customValues(form) });
  } catch (e) {
    if (e.code === "storage_check_failed" && e.body.check) { showCheck(form, e.body.check); return; }
    throw e;
  }
  await render();
  flash("The agent now uses your bucket. Its previous workspace, if any, is kept until you delete it.", true);
}

function usagePanel(agent, u) {
  const box = h("div", { class: "panel", "aria-labelledby": "usage-title" }, h("h2", { id: "usage-title" }, "Usage"));
  if (!u) { box.append(h("p", { class: "muted" }, "No workspace yet.")); return box; }
  box.append(h("div", { class: "stats" },
    h("div", {}, h("strong", { id: "usage-bytes" }, bytes(u.used_bytes)), h("span", { class: "muted" }, "stored")),
    h("div", {}, h("strong", { id: "usage-inodes" }, String(u.inodes)), h("span", { class: "muted" }, "files and folders"))),
    h("p", { class: "muted" }, "Workspace ", h("code", {}, agent.workspace.workspace),
      ": mount it anywhere with ", h("code", {}, `artifacts mount ${agent.workspace.name} /mnt/agent`), "."));
  return box;
}

function activityPanel(u) {
  // The workspace journal's latest changes, newest first (docs/console.md): when, what, where, who.
  const box = h("div", { class: "panel", id: "activity", "aria-labelledby": "activity-title" },
    h("h2", { id: "activity-title" }, "Recent activity"));
  const events = (u && u.recent_activity) || [];
  if (!events.length) { box.append(h("p", { class: "muted" }, "No changes yet.")); return box; }
  const who = (a) => !a ? "" : a.frontend === "mount" ? `mount on ${a.host || "?"}` : (a.frontend || a.user || "");
  box.append(h("table", {},
    h("thead", {}, h("tr", {}, ...["When", "Change", "Path", "By"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, ...events.map((e) => h("tr", {},
      h("td", {}, new Date(e.time * 1000).toLocaleString()),
      h("td", {}, e.op),
      h("td", {}, h("code", {}, e.path || e.where || e.name || "")),
      h("td", {}, who(e.actor)))))));
  return box;
}

function detachedPanel(agent) {
  const box = h("div", { class: "panel" }, h("h2", {}, "Kept workspaces"));
  if (!agent.detached_workspaces.length) {
    box.append(h("p", { class: "muted" }, "None. A workspace the agent stops using (by switching storage) is kept here, with its files, until you delete it."));
    return box;
  }
  box.append(h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Workspace"), h("th", {}, "Storage"),
    h("th", {}, "Status"), h("th", {}, h("span", { class: "muted" }, "Actions")))),
    h("tbody", {}, agent.detached_workspaces.map((w) => {
      const del = h("button", { type: "button", class: "danger" }, "Delete");
      del.addEventListener("click", busy(del, async () => {
        if (!await confirmDialog(`Delete workspace ${w.name}?`, h("p", {}, "Every file in it is deleted. This cannot be undone."))) return;
        await api("DELETE", `/workspaces/~/${encodeURIComponent(w.name)}`);
        await render();
      }));
      return h("tr", {}, h("td", {}, h("code", {}, w.name)), h("td", {}, `${w.storage === "managed" ? "Managed" : "Custom S3"} · ${w.bucket}`),
               h("td", {}, w.status), h("td", {}, w.status === "active" ? del : ""));
    }))));
  return box;
}

function dangerPanel(agent) {
  const del = h("button", { type: "button", class: "danger", id: "delete-agent" }, "Delete agent");
  del.addEventListener("click", busy(del, async () => {
    const also = h("input", { type: "checkbox", id: "delete-workspaces", checked: true });
    const ok = await confirmDialog(`Delete agent ${agent.name}?`, [
      h("p", {}, "Its tokens stop working at once."),
      h("label", { class: "radio" }, also, h("span", {}, "Also delete its workspaces and every file in them. Unchecked, they are kept as workspaces of your account."))]);
    if (!ok) return;
    await api("DELETE", `/agents/${agent.id}?delete_workspaces=${also.checked}`);
    pending = { message: `Agent ${agent.name} deleted${also.checked ? ", with its workspaces" : ""}.`, ok: true };
    location.hash = "#/agents";
  }));
  return h("div", { class: "panel" }, h("h2", {}, "Delete"), h("div", { class: "row" }, del));
}

// -- the Files tab ----------------------------------------------------------------------------------

const join = (dir, name) => (dir ? `${dir}/${name}` : name);
const filesHref = (agent, path, open) => `#/agents/${agent.id}/files?path=${encodeURIComponent(path)}${open ? `&open=${encodeURIComponent(open)}` : ""}`;

async function renderFiles(agent, panel, dir, open) {
  if (!agent.workspace_enabled) {
    panel.append(h("p", { class: "panel" }, "The workspace is off. Turn it on in the ", h("a", { href: `#/agents/${agent.id}/workspace` }, "Workspace tab"), "."));
    return;
  }
  const crumbs = h("nav", { class: "crumbs", "aria-label": "Folder" }, h("a", { href: filesHref(agent, "") }, "/"));
  let acc = "";
  for (const part of dir.split("/").filter(Boolean)) {
    acc = join(acc, part);
    crumbs.append(h("span", { "aria-hidden": "true" }, "›"), h("a", { href: filesHref(agent, acc) }, part));
  }
  panel.append(crumbs);
  if (open) return renderOpenFile(agent, panel, dir, open);
  let listing;
  try {
    listing = await fileOp(agent.id, "readdir", { path: dir, limit: 1000 });
  } catch (e) {
    panel.append(h("p", { class: "check bad" }, e.message)); return;
  }
  const upload = h("input", { type: "file", id: "upload", multiple: true });
  upload.addEventListener("change", async () => {
    for (const file of upload.files) {
      if (file.size > MAX_UPLOAD) { flash(`${file.name} is larger than the 32 MiB write limit.`); continue; }
      try {
        await fileOp(agent.id, "writeFile", { path: join(dir, file.name), content: await base64(file), encoding: "base64" });
        flash(`Uploaded ${file.name}.`, true);
      } catch (e) { flash(`${file.name}: ${e.message}`); }
    }
    await rerenderFiles(agent, dir);
  });
  const folder = h("input", { type: "text", id: "new-folder", required: true });
  const mk = h("button", { type: "submit" }, "New folder");
  const mkForm = h("form", { class: "row", "aria-label": "New folder" }, h("label", { for: "new-folder" }, "Folder name"), folder, mk);
  mkForm.addEventListener("submit", busy(mk, async () => {
    await fileOp(agent.id, "mkdir", { path: join(dir, folder.value) });
    await rerenderFiles(agent, dir);
  }));
  const rows = listing.entries.map((e) => fileRow(agent, dir, e));
  panel.append(h("div", { class: "row" }, h("label", { for: "upload" }, "Upload files"), upload), mkForm,
    h("table", { id: "files" }, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Type"),
      h("th", { scope: "col", class: "num" }, "Size"), h("th", { scope: "col" }, "Modified"), h("th", { scope: "col" }, "Actions"))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "This folder is empty.")))));
  if (listing.truncated) panel.append(h("p", { class: "muted" }, "Only the first 1000 entries are shown."));
}

async function rerenderFiles(agent, dir) {
  location.hash === filesHref(agent, dir) ? await render() : (location.hash = filesHref(agent, dir));
}

function fileRow(agent, dir, e) {
  const path = join(dir, e.name);
  const isDir = e.type === "directory";
  const link = h("a", { href: isDir ? filesHref(agent, path) : filesHref(agent, dir, e.name) }, e.name + (isDir ? "/" : ""));
  const actions = h("div", { class: "row" });
  if (!isDir) {
    const dl = h("button", { type: "button", "aria-label": `Download ${e.name}` }, "Download");
    dl.addEventListener("click", busy(dl, () => download(agent, path, e.name)));
    actions.append(dl);
  }
  const rn = h("button", { type: "button", "aria-label": `Rename ${e.name}` }, "Rename");
  rn.addEventListener("click", () => renameEntry(agent, dir, e, rn));
  const del = h("button", { type: "button", class: "danger", "aria-label": `Delete ${e.name}` }, "Delete");
  del.addEventListener("click", busy(del, async () => {
    const what = isDir ? `the folder ${e.name} and everything in it` : e.name;
    if (!await confirmDialog(`Delete ${e.name}?`, h("p", {}, `This deletes ${what}.`))) return;
    await fileOp(agent.id, isDir ? "rmdir" : "deleteFile", { path });
    await rerenderFiles(agent, dir);
  }));
  actions.append(rn, del);
  return h("tr", {}, h("td", {}, link), h("td", {}, e.type), h("td", { class: "num" }, isDir ? "" : bytes(e.size)),
           h("td", {}, when(e.modifiedAt)), h("td", {}, actions));
}

function renameEntry(agent, dir, e, anchor) {
  const input = h("input", { type: "text", id: "rename-entry", value: e.name, required: true });
  const save = h("button", { type: "submit", class: "primary" }, "Save new name");
  const form = h("form", { class: "row" }, h("label", { for: "rename-entry" }, `New name for ${e.name}`), input, save);
  form.addEventListener("submit", busy(save, async () => {
    await fileOp(agent.id, "moveFile", { src: join(dir, e.name), dest: join(dir, input.value) });
    await rerenderFiles(agent, dir);
  }));
  anchor.closest("td").append(form);
  input.focus();
}

async function renderOpenFile(agent, panel, dir, name) {
  const path = join(dir, name);
  const back = h("a", { href: filesHref(agent, dir) }, "← Back to the folder");
  let page;
  try {
    page = await fileOp(agent.id, "readFile", { path });
  } catch (e) {
    const note = e.code === "EBINARY" ? "This is a binary file: download it instead." : e.message;
    const dl = h("button", { type: "button" }, "Download");
    dl.addEventListener("click", busy(dl, () => download(agent, path, name)));
    panel.append(h("p", {}, back), h("h2", {}, name), h("p", { class: "check bad" }, note), dl);
    return;
  }
  const text = h("textarea", { id: "file-content", "aria-label": `Contents of ${name}`, spellcheck: "false" });
  text.value = page.content;
  const save = h("button", { type: "button", class: "primary" }, "Save");
  let version = page.version;
  save.addEventListener("click", busy(save, async () => {
    const r = await fileOp(agent.id, "writeFile", { path, content: text.value, if_version: version });
    version = r.version;
    flash(`Saved ${name}.`, true);
  }));
  const dl = h("button", { type: "button" }, "Download");
  dl.addEventListener("click", busy(dl, () => download(agent, path, name)));
  panel.append(h("p", {}, back), h("h2", {}, name),
    h("p", { class: "muted" }, `${bytes(page.size)} · version ${page.version}${page.truncated ? " · showing the first 1 MiB" : ""}`),
    text, h("div", { class: "row" }, page.truncated ? "" : save, dl));
}

async function download(agent, path, name) {
  const parts = [];
  let offset = 0, size = Infinity;
  while (offset < size) {
    const r = await fileOp(agent.id, "readFile", { path, offset, length: READ_CHUNK, encoding: "base64" });
    size = r.size;
    const raw = atob(r.content);
    const buf = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) buf[i] = raw.charCodeAt(i);
    parts.push(buf);
    offset += buf.length;
    if (!buf.length) break;
  }
  const url = URL.createObjectURL(new Blob(parts));
  const a = h("a", { href: url, download: name });
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function base64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// -- the Tokens tab ---------------------------------------------------------------------------------

async function renderTokens(agent, panel) {
  const { tokens } = await api("GET", `/agents/${agent.id}/tokens`);
  const name = h("input", { type: "text", id: "token-name", maxlength: 100 });
  const mint = h("button", { type: "submit", class: "primary" }, "Create token");
  const shown = h("div", { role: "status", "aria-live": "polite" });
  const form = h("form", { class: "panel" }, h("p", {}, "An agent token lets a program use this agent's file API (",
    h("code", {}, `POST /agents/${agent.id}/files/readFile`), ", …) without your API key. It reaches this agent's workspace only."),
    h("label", { for: "token-name" }, "Token name ", h("span", { class: "muted" }, "(optional)")), name,
    h("div", { class: "row" }, mint), shown);
  form.addEventListener("submit", busy(mint, async () => {
    const t = await api("POST", `/agents/${agent.id}/tokens`, { name: name.value });
    await render();
    flash("Token created: copy it now, it is not shown again.", true);
    document.querySelector("#tabpanel [role=status]").replaceChildren(h("p", {}, "New token (shown once):"), h("pre", { id: "new-token" }, t.token));
  }));
  const rows = tokens.map((t) => {
    const rv = h("button", { type: "button", class: "danger" }, "Revoke");
    rv.addEventListener("click", busy(rv, async () => { await api("DELETE", `/agents/${agent.id}/tokens/${t.id}`); await render(); }));
    return h("tr", {}, h("td", {}, t.name || h("span", { class: "muted" }, "(unnamed)")), h("td", {}, h("code", {}, t.hint)),
             h("td", {}, when(t.created_at)), h("td", {}, t.revoked_at ? `revoked ${when(t.revoked_at)}` : rv));
  });
  panel.append(form, tokens.length ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Token"),
    h("th", {}, "Created"), h("th", {}, "Status"))), h("tbody", {}, rows)) : h("p", { class: "muted" }, "No tokens yet."));
}

// -- start ------------------------------------------------------------------------------------------

async function signInWithLink(code) {
  // `artifacts console` printed /console/?code=...: trade it for a key of our own, then drop it from the address
  history.replaceState(null, "", "/console/#/agents");
  const resp = await fetch("/console/sign-in", { method: "POST", headers: { "Content-Type": "application/json" },
                                                 body: JSON.stringify({ code }) });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) { pending = { message: body.message || "That sign-in link did not work.", ok: false }; return; }
  sessionStorage.setItem(KEY, body.key);
  sessionStorage.setItem(KEY + ".linkedKeyId", body.id);
  const me = await api("GET", "/whoami");
  sessionStorage.setItem(KEY + ".handle", me.account.handle);
}

window.addEventListener("hashchange", render);
document.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("signout").addEventListener("click", () => signOut("Signed out."));
  const code = new URLSearchParams(location.search).get("code");
  if (code) await signInWithLink(code);
  render();
});
