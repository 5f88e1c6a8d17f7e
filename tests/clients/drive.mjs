// drive.mjs: runs a fixed scenario of real coding-agent tool calls in one workspace directory and
// prints a normalized JSON transcript, so that the same run on a local directory and on a
// sandmount mount (with SHELL=sandexec, exec routed by the cwd) can be compared.
//
// Tools: OpenClaw's createCoreCodingTools() (read, write, edit, apply_patch, exec with env,
// timeout, pty, pathPrepend) and pi's createReadTool/createWriteTool/createEditTool.
// OpenClaw does not export createCoreCodingTools from its package entry: it lives in a bundled
// chunk dist/core-coding-tools-<hash>.mjs, exported there as `t`; found here by that name.
//
// usage: node drive.mjs DEPS_DIR WORKSPACE [REMOTE_ROOT]
//   DEPS_DIR: where scripts/clients-setup installed the packages (has node_modules/)
//   REMOTE_ROOT: the workspace as the sandbox sees it (replaced by <WS> like WORKSPACE)
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [depsDir, workspace, remoteRoot] = process.argv.slice(2);
if (!depsDir || !workspace) {
	console.error("usage: node drive.mjs DEPS_DIR WORKSPACE [REMOTE_ROOT]");
	process.exit(2);
}
const modules = path.join(depsDir, "node_modules");

async function loadOpenClaw() {
	const dist = path.join(modules, "openclaw", "dist");
	const chunks = fs.readdirSync(dist).filter((n) => /^core-coding-tools-[\w-]+\.mjs$/.test(n));
	for (const chunk of chunks) {
		const file = path.join(dist, chunk);
		const m = /createCoreCodingTools as (\w+)\b/.exec(fs.readFileSync(file, "utf8"));
		if (m) return (await import(pathToFileURL(file).href))[m[1]];
	}
	throw new Error(`no createCoreCodingTools export in ${dist}/core-coding-tools-*.mjs`);
}

async function loadPi() {
	const entry = path.join(modules, "@mariozechner", "pi-coding-agent", "dist", "index.js");
	return import(pathToFileURL(entry).href);
}

// Paths, durations and process ids differ between runs; everything else must not.
function normalize(value) {
	if (typeof value === "string") {
		let s = value.split(workspace).join("<WS>");
		if (remoteRoot) s = s.split(remoteRoot).join("<WS>");
		return s.replace(/\r\n/g, "\n");
	}
	if (Array.isArray(value)) return value.map(normalize);
	if (value && typeof value === "object") {
		const out = {};
		for (const [k, v] of Object.entries(value)) {
			if (["durationMs", "pid", "sessionId", "startedAt", "endedAt", "tail"].includes(k))
				continue;
			out[k] = normalize(v);
		}
		return out;
	}
	return value;
}

function summary(result) {
	const text = (result?.content ?? [])
		.filter((c) => c.type === "text")
		.map((c) => c.text)
		.join("");
	const d = result?.details ?? {};
	const keep = {};
	for (const k of ["status", "exitCode", "exitSignal", "exitReason", "timedOut", "cwd", "diff"])
		if (k in d) keep[k] = d[k];
	return { text, details: keep };
}

async function call(transcript, label, tool, params) {
	let entry;
	try {
		entry = { step: label, ...summary(await tool.execute(`call-${label}`, params)) };
	} catch (err) {
		entry = { step: label, error: String(err?.message ?? err) };
	}
	transcript.push(normalize(entry));
}

function fileState(rel) {
	const p = path.join(workspace, rel);
	return fs.existsSync(p) ? fs.readFileSync(p, "utf8") : null;
}

const PATCH = [
	"*** Begin Patch",
	"*** Add File: src/added.txt",
	"+added by apply_patch",
	"+second line",
	"*** Update File: notes.txt",
	"@@",
	" alpha",
	"-BETA",
	"+beta patched",
	" gamma",
	"*** Delete File: doomed.txt",
	"*** End Patch",
].join("\n");

async function openclawScenario(t, tools) {
	const by = Object.fromEntries(tools.map((x) => [x.name, x]));
	await call(t, "oc.write", by.write, { path: "notes.txt", content: "alpha\nbeta\ngamma\n" });
	await call(t, "oc.write-doomed", by.write, { path: "doomed.txt", content: "bye\n" });
	await call(t, "oc.read", by.read, { path: "notes.txt" });
	await call(t, "oc.edit", by.edit, {
		path: "notes.txt",
		edits: [{ oldText: "beta", newText: "BETA" }],
	});
	await call(t, "oc.apply_patch", by.apply_patch, { input: PATCH });
	t.push({ step: "oc.files", notes: fileState("notes.txt"), added: fileState("src/added.txt"),
		 doomed: fileState("doomed.txt") });
	await call(t, "oc.read-added", by.read, { path: "src/added.txt" });
	const exec = (label, params) => call(t, label, by.exec, { yieldMs: 60000, ...params });
	await exec("oc.exec-env", {
		command: 'printf "%s|%s|%s\\n" "$FOO" "${SECRET_OF_GATEWAY-unset}" "$(pwd)"; ls src',
		env: { FOO: "bar" },
	});
	await exec("oc.exec-workdir", { command: "pwd; cat added.txt", workdir: "src" });
	await exec("oc.exec-exit", { command: "echo out; echo err >&2; exit 3" });
	await exec("oc.exec-timeout", { command: "echo begun; sleep 30; echo never", timeoutSeconds: 2 });
	await exec("oc.exec-pty", { command: "test -t 0 && test -t 1 && echo tty-yes; stty size", pty: true });
	await exec("oc.exec-writes", { command: "mkdir -p made && printf 'by exec\\n' > made/f.txt" });
	await call(t, "oc.read-exec-made", by.read, { path: "made/f.txt" });
}

async function pathPrependScenario(t, create) {
	const tools = create(toolOptions({ pathPrepend: ["/opt/sx-prepend/bin"] }));
	const exec = tools.find((x) => x.name === "exec");
	await call(t, "oc.exec-path-prepend", exec, {
		command: 'printf "%s\\n" "$PATH" | cut -d: -f1; case ":$PATH:" in *::*) echo empty-element;; esac',
		yieldMs: 60000,
	});
}

async function piScenario(t, pi) {
	const read = pi.createReadTool(workspace);
	const write = pi.createWriteTool(workspace);
	const edit = pi.createEditTool(workspace);
	await call(t, "pi.write", write, { path: "pi/notes.md", content: "# pi\none\ntwo\n" });
	await call(t, "pi.read", read, { path: "pi/notes.md" });
	await call(t, "pi.edit", edit, { path: "pi/notes.md", edits: [{ oldText: "two", newText: "TWO" }] });
	await call(t, "pi.read-after-edit", read, { path: "pi/notes.md", offset: 2 });
	await call(t, "pi.read-missing", read, { path: "pi/missing.md" });
	await call(t, "pi.edit-no-match", edit, { path: "pi/notes.md", edits: [{ oldText: "zzz", newText: "y" }] });
}

function toolOptions(execDefaults = {}) {
	return {
		codingRoot: workspace,
		containmentRoot: workspace,
		includeBaseCodingTools: true,
		shellTools: "full",
		applyPatchEnabled: true,
		workspaceOnly: true,
		execDefaults: { host: "gateway", security: "full", ask: "off", ...execDefaults },
	};
}

const transcript = [];
const create = await loadOpenClaw();
await openclawScenario(transcript, create(toolOptions()));
await pathPrependScenario(transcript, create);
await piScenario(transcript, await loadPi());
process.stdout.write(JSON.stringify(transcript, null, 1) + "\n");
// OpenClaw keeps timers and workers alive after its tools return
process.exit(0);
