// The adapter behind the real gate: tachi-gate (TACHI_GATE_BIN, default
// ../../target/debug/tachi-gate) with [identity] mode = "jwt" in front of the
// Tachi stand-in, whose auth middleware runs the adapter as the patch has
// Tachi run it.
import { GateIdentityFromEnv } from "../src/gate-identity";
import { PrepareGate } from "./gate-process";
import { ALL_PERMISSIONS, GUEST_TOKEN, NAME, StartStandIn } from "./tachi-stand-in";
import { SignJWT, decodeProtectedHeader, generateKeyPair } from "jose";
import assert from "node:assert/strict";
import { createPrivateKey } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import type { Gate } from "./gate-process";
import type { StandIn } from "./tachi-stand-in";

interface Answer {
	status: number;
	body: {
		success: boolean;
		description?: string;
		error?: string;
		body?: Record<string, unknown>;
	};
}

async function Call(
	url: string,
	init: { method?: string; headers?: Record<string, string>; body?: unknown } = {}
): Promise<Answer> {
	const res = await fetch(url, {
		method: init.method ?? "GET",
		headers: { ...(init.body === undefined ? {} : { "Content-Type": "application/json" }), ...init.headers },
		body: init.body === undefined ? undefined : JSON.stringify(init.body),
	});
	const text = await res.text();

	try {
		return { status: res.status, body: JSON.parse(text) as Answer["body"] };
	} catch {
		throw new Error(`${init.method ?? "GET"} ${url}: ${res.status} with a body that is not JSON: ${text}`);
	}
}

function Bearer(key: string) {
	return { Authorization: `Bearer ${key}` };
}

interface KeyAnswer {
	token: string;
	tokenID: string;
}

function Now() {
	return Math.floor(Date.now() / 1000);
}

// The gate's signing key as its key file holds it: PKCS#8 PEM, which Node
// reads as it reads OpenSSL's.
function Ed25519PrivateKey(pem: string) {
	return createPrivateKey(pem);
}

describe("the adapter behind the real gate", () => {
	let gate: Gate;
	let tachi: StandIn;
	let key: KeyAnswer;
	let clientKey: KeyAnswer;
	let bannedKey: KeyAnswer;
	let readOnlyKey: KeyAnswer;
	let clientID: string;

	// The gate's current signing key, read from its key file, to sign
	// assertions whose only fault is a claim.
	async function GateSigningKey() {
		const file = JSON.parse(fs.readFileSync(path.join(gate.dataDir, "identity-keys.json"), "utf-8")) as {
			keys: Array<{ kid: string; private_key: string; retired: number | null }>;
		};
		const current = file.keys.find((k) => k.retired === null);

		assert.ok(current, "the key file holds a signing key");

		return { kid: current.kid, key: Ed25519PrivateKey(current.private_key) };
	}

	async function SignAsGate(claims: Record<string, unknown>) {
		const { kid, key: signing } = await GateSigningKey();

		return new SignJWT({
			iss: gate.url,
			aud: "tachi",
			sub: "42",
			iat: Now(),
			exp: Now() + 60,
			jti: "test",
			permissions: ["submit_score"],
			identifier: "Score hook",
			token_id: key.tokenID,
			...claims,
		})
			.setProtectedHeader({ alg: "EdDSA", typ: "JWT", kid })
			.sign(signing);
	}

	// The assertion the gate sends upstream for a key, as the route saw it.
	async function AssertionFor(k: KeyAnswer) {
		const res = await Call(`${gate.url}/api/v1/echo`, { headers: Bearer(k.token) });

		assert.equal(res.status, 200);

		return res.body.body?.assertion as string;
	}

	before(async () => {
		gate = await PrepareGate();

		// The adapter is configured as a Tachi server would be, from its
		// environment: the gate's public URL as issuer, its JWKS from there.
		tachi = await StartStandIn(GateIdentityFromEnv({ TACHI_GATE_ISSUER: gate.url }));
		tachi.state.banned.add(666);
		tachi.state.sessions.set("s%3Aseven", 7);
		tachi.state.tachiKeys.set("tachi-own-key", {
			userID: 9,
			token: "tachi-own-key",
			identifier: "Made by Tachi",
			permissions: { submit_score: true },
			fromAPIClient: null,
		});

		key = (await gate.cli([
			"keys",
			"create",
			"--user",
			"42",
			"--permissions",
			"submit_score,customise_profile",
			"--identifier",
			"Score hook",
		])) as KeyAnswer;
		readOnlyKey = (await gate.cli([
			"keys",
			"create",
			"--user",
			"42",
			"--permissions",
			"customise_profile",
			"--identifier",
			"Profile only",
		])) as KeyAnswer;
		bannedKey = (await gate.cli([
			"keys",
			"create",
			"--user",
			"666",
			"--permissions",
			"submit_score",
			"--identifier",
			"Banned user's hook",
		])) as KeyAnswer;
		clientID = (
			(await gate.cli([
				"clients",
				"create",
				"--name",
				"Epic Games",
				"--author",
				"1",
				"--permissions",
				"submit_score",
			])) as { clientID: string }
		).clientID;
		clientKey = (await gate.cli(["keys", "create", "--user", "42", "--client", clientID])) as KeyAnswer;

		await gate.start(tachi.port);
	});

	after(async () => {
		await gate?.stop();
		await tachi?.close();
	});

	test("a gate key: the route sees its user and permissions, as for a Tachi Bearer key", async () => {
		const res = await Call(`${gate.url}/api/v1/echo`, { headers: Bearer(key.token) });

		assert.equal(res.status, 200, JSON.stringify(res.body));
		assert.deepEqual(res.body.body?.auth, {
			userID: 42,
			token: key.tokenID,
			identifier: "Score hook",
			permissions: { customise_profile: true, submit_score: true },
			fromAPIClient: null,
		});

		// The headers agree, and the key itself never reaches the server.
		assert.equal(res.body.body?.userIDHeader, "42");
		assert.equal(res.body.body?.authorization, null);
		assert.equal(decodeProtectedHeader(res.body.body?.assertion as string).alg, "EdDSA");
	});

	test("a key issued through a client: fromAPIClient is the client", async () => {
		const res = await Call(`${gate.url}/api/v1/echo`, { headers: Bearer(clientKey.token) });

		assert.equal(res.status, 200, JSON.stringify(res.body));
		assert.deepEqual(res.body.body?.auth, {
			userID: 42,
			token: clientKey.tokenID,
			identifier: (res.body.body?.auth as { identifier: string }).identifier,
			permissions: { submit_score: true },
			fromAPIClient: clientID,
		});
	});

	test("Tachi's status route answers whoami for a gate key", async () => {
		const res = await Call(`${gate.url}/api/v1/status`, { headers: Bearer(key.token) });

		assert.equal(res.status, 200);
		assert.equal(res.body.body?.whoami, 42);
		assert.deepEqual(res.body.body?.permissions, ["customise_profile", "submit_score"]);
	});

	test("a score import with a gate key passes Tachi's RequireNotGuest and RequirePermissions", async () => {
		const res = await Call(`${gate.url}/ir/direct-manual/import`, {
			method: "POST",
			headers: Bearer(key.token),
			body: { meta: { game: "iidx", playtype: "SP", service: "hook" }, scores: [{}, {}] },
		});

		assert.equal(res.status, 200, JSON.stringify(res.body));
		assert.deepEqual(res.body.body, { userID: 42, scores: 2 });
	});

	test("a key without submit_score is refused by the gate's policy before Tachi sees it", async () => {
		const before = tachi.state.hits.length;
		const res = await Call(`${gate.url}/ir/direct-manual/import`, {
			method: "POST",
			headers: Bearer(readOnlyKey.token),
			body: { scores: [] },
		});

		assert.equal(res.status, 403);
		assert.equal(tachi.state.hits.length, before);
	});

	test("no key: a guest, and no assertion is sent", async () => {
		const res = await Call(`${gate.url}/api/v1/echo`);

		assert.equal(res.status, 200);
		assert.deepEqual(res.body.body?.auth, GUEST_TOKEN);
		assert.equal(res.body.body?.assertion, null);
	});

	test("a session cookie: Tachi's own session logic runs, untouched", async () => {
		const res = await Call(`${gate.url}/api/v1/echo`, { headers: { Cookie: "connect.sid=s%3Aseven" } });

		assert.equal(res.status, 200);
		assert.deepEqual(res.body.body?.auth, {
			userID: 7,
			identifier: "Session-Key 7",
			token: null,
			permissions: ALL_PERMISSIONS,
			fromAPIClient: null,
		});
		assert.equal(res.body.body?.assertion, null);
	});

	test("a session cookie on a path a policy covers: the gate asks Tachi's status route, Tachi judges", async () => {
		const res = await Call(`${gate.url}/ir/direct-manual/import`, {
			method: "POST",
			headers: { Cookie: "connect.sid=s%3Aseven" },
			body: { scores: [{}] },
		});

		assert.equal(res.status, 200, JSON.stringify(res.body));
		assert.deepEqual(res.body.body, { userID: 7, scores: 1 });
		assert.ok(tachi.state.hits.includes("GET /api/v1/status"));
	});

	test("an assertion a client sends through the gate is removed: a guest", async () => {
		const forged = await SignAsGate({});
		const res = await Call(`${gate.url}/api/v1/echo`, { headers: { "X-Tachi-Identity": forged } });

		assert.equal(res.status, 200);
		assert.deepEqual(res.body.body?.auth, GUEST_TOKEN);
		assert.equal(res.body.body?.assertion, null);
	});

	test("with a key, a client's own assertion is replaced by the gate's", async () => {
		const mine = await SignAsGate({ sub: "1", permissions: ["delete_score"] });
		const res = await Call(`${gate.url}/api/v1/echo`, {
			headers: { ...Bearer(key.token), "X-Tachi-Identity": mine },
		});

		assert.equal(res.status, 200);
		assert.equal((res.body.body?.auth as { userID: number }).userID, 42);
		assert.notEqual(res.body.body?.assertion, mine);
	});

	test("a banned user's valid assertion: Tachi's RejectIfBanned answers", async () => {
		const res = await Call(`${gate.url}/api/v1/echo`, { headers: Bearer(bannedKey.token) });

		assert.equal(res.status, 403);
		assert.deepEqual(res.body, { success: false, description: `You are banned from ${NAME}` });
	});

	describe("sent straight to Tachi, past the gate", () => {
		async function Direct(assertion: string, route = "/api/v1/echo", method = "GET") {
			return Call(`${tachi.url}${route}`, { method, headers: { "X-Tachi-Identity": assertion } });
		}

		function AssertRefused(res: Answer, reason: RegExp, errorKey: "description" | "error" = "description") {
			assert.equal(res.status, 401, JSON.stringify(res.body));
			assert.equal(res.body.success, false);
			assert.match(String(res.body[errorKey]), reason);
			assert.equal(res.body.body, undefined);
		}

		test("the gate's own assertion is accepted (the checks below refuse only their fault)", async () => {
			const res = await Direct(await SignAsGate({}));

			assert.equal(res.status, 200);
			assert.equal((res.body.body?.auth as { userID: number }).userID, 42);
		});

		test("forged with another key under the gate's kid: refused", async () => {
			const { kid } = await GateSigningKey();
			const { privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
			const forged = await new SignJWT({
				iss: gate.url,
				aud: "tachi",
				sub: "1",
				iat: Now(),
				exp: Now() + 60,
				jti: "x",
				permissions: ["submit_score"],
				identifier: "forged",
				token_id: "x",
			})
				.setProtectedHeader({ alg: "EdDSA", typ: "JWT", kid })
				.sign(privateKey);

			AssertRefused(await Direct(forged), /bad signature/u);
		});

		test("forged with a key the gate does not publish: refused", async () => {
			const { privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
			const forged = await new SignJWT({ iss: gate.url, aud: "tachi", sub: "1" })
				.setProtectedHeader({ alg: "EdDSA", typ: "JWT", kid: "made-up" })
				.setIssuedAt()
				.setExpirationTime("1m")
				.sign(privateKey);

			AssertRefused(await Direct(forged), /key the gate does not publish/u);
		});

		test("expired (signed with the gate's key): refused", async () => {
			AssertRefused(await Direct(await SignAsGate({ iat: Now() - 200, exp: Now() - 100 })), /expired/u);
		});

		test("for another audience (signed with the gate's key): refused", async () => {
			AssertRefused(await Direct(await SignAsGate({ aud: "kamaitachi" })), /audience/u);
		});

		test("from another issuer (signed with the gate's key): refused", async () => {
			AssertRefused(await Direct(await SignAsGate({ iss: "https://other-gate.example" })), /issuer/u);
		});

		test("alg none: refused", async () => {
			const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
			const unsigned = `${b64({ alg: "none", typ: "JWT" })}.${b64({
				iss: gate.url,
				aud: "tachi",
				sub: "42",
				iat: Now(),
				exp: Now() + 60,
			})}.`;

			AssertRefused(await Direct(unsigned), /algorithm not allowed/u);
		});

		test("a score import with a forged assertion never reaches the route", async () => {
			const { privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
			const { kid } = await GateSigningKey();
			const forged = await new SignJWT({ iss: gate.url, aud: "tachi", sub: "42" })
				.setProtectedHeader({ alg: "EdDSA", typ: "JWT", kid })
				.setIssuedAt()
				.setExpirationTime("1m")
				.sign(privateKey);

			AssertRefused(await Direct(forged, "/ir/direct-manual/import", "POST"), /bad signature/u);
		});

		test("on a fervidex-style route the refusal says error, as Tachi's hooks read it", async () => {
			AssertRefused(
				await Direct(await SignAsGate({ aud: "kamaitachi" }), "/ir/fervidex/score/submit", "POST"),
				/audience/u,
				"error"
			);
		});

		test("no assertion: Tachi's own Bearer keys still work", async () => {
			const res = await Call(`${tachi.url}/api/v1/echo`, { headers: Bearer("tachi-own-key") });

			assert.equal(res.status, 200);
			assert.equal((res.body.body?.auth as { userID: number }).userID, 9);
		});
	});

	test("the JWKS is the same on the public and the admin listener", async () => {
		const pub = (await (await fetch(`${gate.url}/.well-known/jwks.json`)).json()) as { keys: Array<{ kid: string }> };
		const admin = (await (await fetch(`${gate.adminUrl}/.well-known/jwks.json`)).json()) as typeof pub;

		assert.deepEqual(pub, admin);
		assert.equal(pub.keys.length, 1);
		assert.equal(pub.keys[0]?.kid, (await GateSigningKey()).kid);
	});

	test("after a rotation the adapter verifies the new key's assertions and the old key's", async () => {
		const old = await AssertionFor(key);
		const oldKid = decodeProtectedHeader(old).kid;

		const rotated = (await gate.cli(["identity", "rotate"], { admin: true })) as { kid: string };

		assert.notEqual(rotated.kid, oldKid);

		// A key whose assertion was not kept gets one from the new key at once.
		const fresh = await AssertionFor(readOnlyKey);

		assert.equal(decodeProtectedHeader(fresh).kid, rotated.kid);

		// The adapter fetched the JWKS before the rotation; it fetches it again
		// for the new kid, and still holds the old key.
		const res = await Call(`${gate.url}/api/v1/echo`, { headers: Bearer(readOnlyKey.token) });

		assert.equal(res.status, 200, JSON.stringify(res.body));
		assert.equal((res.body.body?.auth as { userID: number }).userID, 42);

		const direct = await Call(`${tachi.url}/api/v1/echo`, { headers: { "X-Tachi-Identity": old } });

		assert.equal(direct.status, 200, JSON.stringify(direct.body));
	});

	test("a revoked key: the gate refuses it before Tachi sees anything", async () => {
		const ok = await Call(`${gate.url}/api/v1/echo`, { headers: Bearer(clientKey.token) });

		assert.equal(ok.status, 200);

		await gate.cli(["keys", "revoke", clientKey.tokenID], { admin: true });

		const before = tachi.state.hits.length;
		const res = await Call(`${gate.url}/api/v1/echo`, { headers: Bearer(clientKey.token) });

		assert.equal(res.status, 401);
		assert.match(String(res.body.description), /does not correspond with any key/u);
		assert.equal(tachi.state.hits.length, before, "the upstream saw the revoked key's request");

		const post = await Call(`${gate.url}/ir/direct-manual/import`, {
			method: "POST",
			headers: Bearer(clientKey.token),
			body: { scores: [{}] },
		});

		assert.equal(post.status, 401);
		assert.equal(tachi.state.hits.length, before, "the upstream saw the revoked key's import");
	});
});
