// tachi-server.patch carries src/gate-identity.ts as the file it adds to
// Tachi: the two must not drift apart.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";

const ROOT = path.resolve(__dirname, "..", "..");
const PATCH = fs.readFileSync(path.join(ROOT, "tachi-server.patch"), "utf-8");

// The lines a patch adds to a new file, as the file's text.
function AddedFile(patch: string, file: string) {
	const start = patch.indexOf(`diff --git a/${file} b/${file}\n`);

	assert.ok(start >= 0, `the patch touches ${file}`);

	const rest = patch.slice(start + 1);
	const end = rest.indexOf("\ndiff --git ");
	const section = end < 0 ? rest : rest.slice(0, end);

	assert.match(section, /\nnew file mode 100644\n/u, `${file} is a new file`);

	return `${section
		.split("\n")
		.filter((l) => l.startsWith("+") && !l.startsWith("+++ "))
		.map((l) => l.slice(1))
		.join("\n")}\n`;
}

test("the patch names the Tachi commit it is written against", () => {
	assert.match(PATCH, /^Against zkrising\/Tachi at commit [0-9a-f]{40}\.$/mu);
});

test("the module the patch adds is src/gate-identity.ts, unchanged", () => {
	const added = AddedFile(PATCH, "server/src/server/middleware/gate-identity.ts");

	assert.equal(added, fs.readFileSync(path.join(ROOT, "src", "gate-identity.ts"), "utf-8"));
});

test("the patch pins the jose version this package is tested with", () => {
	const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf-8")) as {
		dependencies: Record<string, string>;
	};

	assert.match(PATCH, new RegExp(`^\\+\t\t"jose": "${pkg.dependencies.jose}",$`, "mu"));
	assert.match(PATCH, new RegExp(`^\\+  /jose@${pkg.dependencies.jose}:$`, "mu"));
});
