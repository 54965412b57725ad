// The adapter alone: assertions signed here with jose, as the gate signs them.
import { CreateGateIdentityCheck, GateIdentityFromEnv } from "../src/gate-identity";
import { SignJWT, exportJWK, exportSPKI, generateKeyPair } from "jose";
import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, test } from "node:test";
import type { GateIdentityResult } from "../src/gate-identity";
import type { JWK, KeyLike } from "jose";
import type { AddressInfo } from "node:net";

const ISSUER = "https://gate.example";

interface Signer {
	kid: string;
	privateKey: KeyLike;
	jwk: JWK;
}

async function NewSigner(kid: string): Promise<Signer> {
	const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
	const jwk = { ...(await exportJWK(publicKey)), kid, alg: "EdDSA", use: "sig" };

	return { kid, privateKey, jwk };
}

function Now() {
	return Math.floor(Date.now() / 1000);
}

// The claims the gate sends, with overrides (undefined removes a claim).
async function Sign(
	signer: Signer,
	overrides: Record<string, unknown> = {},
	header: Record<string, unknown> = {}
) {
	const claims: Record<string, unknown> = {
		iss: ISSUER,
		aud: "tachi",
		sub: "42",
		iat: Now(),
		exp: Now() + 60,
		jti: "j-1",
		permissions: ["customise_profile", "submit_score"],
		identifier: "My Score Hook",
		client_id: "CIabc",
		token_id: "tid-1",
		...overrides,
	};

	for (const [k, v] of Object.entries(claims)) {
		if (v === undefined) {
			delete claims[k];
		}
	}

	return new SignJWT(claims)
		.setProtectedHeader({ alg: "EdDSA", typ: "JWT", kid: signer.kid, ...header })
		.sign(signer.privateKey);
}

function B64(value: unknown) {
	return Buffer.from(JSON.stringify(value)).toString("base64url");
}

function Headers(token: string) {
	return { "x-tachi-identity": token };
}

function AssertRefused(result: GateIdentityResult, status: number, reason: RegExp) {
	assert.equal(result.kind, "refused", JSON.stringify(result));

	if (result.kind === "refused") {
		assert.equal(result.status, status);
		assert.match(result.description, reason);
	}
}

describe("with a configured public key", () => {
	let gate: Signer;
	let other: Signer;
	let check: ReturnType<typeof CreateGateIdentityCheck>;

	before(async () => {
		gate = await NewSigner("k1");
		other = await NewSigner("k1");
		check = CreateGateIdentityCheck({ issuer: ISSUER, publicKey: JSON.stringify(gate.jwk) });
	});

	test("a valid assertion becomes the auth object Tachi sets for a Bearer key", async () => {
		const result = await check(Headers(await Sign(gate)));

		assert.equal(result.kind, "valid");
		assert.deepEqual(result.kind === "valid" && result.auth, {
			userID: 42,
			token: "tid-1",
			identifier: "My Score Hook",
			permissions: { customise_profile: true, submit_score: true },
			fromAPIClient: "CIabc",
		});
	});

	test("a key made without a client has fromAPIClient null", async () => {
		const result = await check(Headers(await Sign(gate, { client_id: undefined })));

		assert.equal(result.kind === "valid" && result.auth.fromAPIClient, null);
	});

	test("no header: absent, whatever else the request carries", async () => {
		assert.deepEqual(await check({ authorization: "Bearer abc", cookie: "connect.sid=x" }), {
			kind: "absent",
		});
	});

	test("the header's name is matched as Node gives it (lower case)", async () => {
		const custom = CreateGateIdentityCheck({
			issuer: ISSUER,
			header: "X-Gate-Assertion",
			publicKey: JSON.stringify(gate.jwk),
		});

		assert.equal((await custom({ "x-gate-assertion": await Sign(gate) })).kind, "valid");
		assert.equal((await custom(Headers(await Sign(gate)))).kind, "absent");
	});

	test("an empty header is refused, not taken for no header", async () => {
		AssertRefused(await check(Headers("")), 401, /malformed/u);
	});

	test("a header sent twice is refused", async () => {
		const token = await Sign(gate);

		AssertRefused(await check({ "x-tachi-identity": [token, token] }), 401, /more than once/u);
	});

	test("signed with another key under the same kid: bad signature", async () => {
		AssertRefused(await check(Headers(await Sign(other))), 401, /bad signature/u);
	});

	test("a payload changed after signing: bad signature", async () => {
		const [h, , s] = (await Sign(gate)).split(".");
		const forged = `${h}.${B64({ ...Claims(await Sign(gate)), sub: "1" })}.${s}`;

		AssertRefused(await check(Headers(forged)), 401, /bad signature/u);
	});

	test("expired beyond the clock tolerance: refused", async () => {
		AssertRefused(
			await check(Headers(await Sign(gate, { iat: Now() - 120, exp: Now() - 31 }))),
			401,
			/expired/u
		);
	});

	test("expired within the 30 s clock tolerance: accepted", async () => {
		const result = await check(Headers(await Sign(gate, { iat: Now() - 80, exp: Now() - 20 })));

		assert.equal(result.kind, "valid");
	});

	test("issued in the future beyond the tolerance: refused", async () => {
		AssertRefused(
			await check(Headers(await Sign(gate, { iat: Now() + 120, exp: Now() + 180 }))),
			401,
			/future/u
		);
	});

	test("not before a time still to come: refused", async () => {
		AssertRefused(await check(Headers(await Sign(gate, { nbf: Now() + 120 }))), 401, /not yet valid/u);
	});

	test("for another audience: refused", async () => {
		AssertRefused(await check(Headers(await Sign(gate, { aud: "kamaitachi" }))), 401, /audience/u);
	});

	test("an audience list that holds ours is accepted, as JWT says", async () => {
		const result = await check(Headers(await Sign(gate, { aud: ["other", "tachi"] })));

		assert.equal(result.kind, "valid");
	});

	test("from another issuer, or ours with a trailing slash: refused", async () => {
		AssertRefused(await check(Headers(await Sign(gate, { iss: "https://evil.example" }))), 401, /issuer/u);
		AssertRefused(await check(Headers(await Sign(gate, { iss: `${ISSUER}/` }))), 401, /issuer/u);
	});

	test("a configured issuer's trailing slash is ignored, as the gate leaves it out", async () => {
		const slash = CreateGateIdentityCheck({ issuer: `${ISSUER}/`, publicKey: JSON.stringify(gate.jwk) });

		assert.equal((await slash(Headers(await Sign(gate)))).kind, "valid");
	});

	test("alg none: refused", async () => {
		const token = `${B64({ alg: "none", typ: "JWT" })}.${B64(Claims(await Sign(gate)))}.`;

		AssertRefused(await check(Headers(token)), 401, /algorithm not allowed/u);
	});

	test("HS256 with the public key as secret: refused", async () => {
		const secret = new TextEncoder().encode(JSON.stringify(gate.jwk));
		const token = await new SignJWT(Claims(await Sign(gate)))
			.setProtectedHeader({ alg: "HS256", typ: "JWT", kid: "k1" })
			.sign(secret);

		AssertRefused(await check(Headers(token)), 401, /algorithm not allowed/u);
	});

	test("a typ other than JWT: refused", async () => {
		AssertRefused(await check(Headers(await Sign(gate, {}, { typ: "at+jwt" }))), 401, /not a JWT/u);
	});

	for (const claim of ["sub", "exp", "iat", "jti", "permissions", "identifier", "token_id"]) {
		test(`without ${claim}: refused`, async () => {
			AssertRefused(
				await check(Headers(await Sign(gate, { [claim]: undefined }))),
				401,
				new RegExp(`no ${claim} claim`, "u")
			);
		});
	}

	for (const [claim, value, reason] of [
		["sub", "abc", /user ID/u],
		["sub", "042", /user ID/u],
		["sub", "0", /user ID/u],
		["sub", "99999999999999999", /user ID/u],
		["permissions", "submit_score", /list of names/u],
		["permissions", [1], /list of names/u],
		["identifier", 3, /identifier/u],
		["token_id", "", /token_id/u],
		["client_id", 7, /client_id/u],
	] as Array<[string, unknown, RegExp]>) {
		test(`${claim} = ${JSON.stringify(value)}: refused`, async () => {
			AssertRefused(await check(Headers(await Sign(gate, { [claim]: value }))), 401, reason);
		});
	}

	test("a permission named __proto__ stays a plain key", async () => {
		const result = await check(Headers(await Sign(gate, { permissions: ["__proto__", "submit_score"] })));

		assert.equal(result.kind, "valid");

		if (result.kind === "valid") {
			assert.equal(Object.getPrototypeOf(result.auth.permissions), Object.prototype);
			assert.deepEqual(Object.keys(result.auth.permissions), ["__proto__", "submit_score"]);
		}
	});

	test("garbage: refused as malformed", async () => {
		AssertRefused(await check(Headers("not.a.jwt")), 401, /malformed/u);
		AssertRefused(await check(Headers("abc")), 401, /malformed/u);
	});
});

describe("public keys in other forms", () => {
	test("an SPKI PEM", async () => {
		const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
		const check = CreateGateIdentityCheck({ issuer: ISSUER, publicKey: await exportSPKI(publicKey) });
		const signer = { kid: "p", privateKey, jwk: { kty: "OKP" } };

		assert.equal((await check(Headers(await Sign(signer)))).kind, "valid");
	});

	test("a JWKS with two keys picks by kid", async () => {
		const a = await NewSigner("a");
		const b = await NewSigner("b");
		const check = CreateGateIdentityCheck({ issuer: ISSUER, publicKey: JSON.stringify({ keys: [a.jwk, b.jwk] }) });

		assert.equal((await check(Headers(await Sign(a)))).kind, "valid");
		assert.equal((await check(Headers(await Sign(b)))).kind, "valid");
		AssertRefused(
			await check(Headers(await Sign({ ...(await NewSigner("c")) }))),
			401,
			/key the gate does not publish/u
		);
	});

	test("configuration mistakes fail at once", async () => {
		const { publicKey } = await generateKeyPair("ES256");
		const ec = await exportJWK(publicKey);
		const ed = (await NewSigner("x")).jwk;

		assert.throws(() => CreateGateIdentityCheck({ issuer: ISSUER, publicKey: JSON.stringify(ec) }), /Ed25519/u);
		assert.throws(() => CreateGateIdentityCheck({ issuer: ISSUER, publicKey: "hello" }), /neither/u);
		assert.throws(
			() => CreateGateIdentityCheck({ issuer: ISSUER, publicKey: JSON.stringify(ed), jwksUrl: ISSUER }),
			/not both/u
		);
		assert.throws(() => CreateGateIdentityCheck({ issuer: "gate.example" }), /issuer/u);
		assert.throws(() => CreateGateIdentityCheck({ issuer: ISSUER, jwksUrl: "file:///etc/passwd" }), /JWKS URL/u);
	});
});

describe("with the JWKS fetched from the gate", () => {
	let first: Signer;
	let second: Signer;
	let published: Array<JWK> = [];
	let fetches = 0;
	let failing = false;
	let server: http.Server;
	let url: string;

	before(async () => {
		first = await NewSigner("first");
		second = await NewSigner("second");
		published = [first.jwk];
		server = http.createServer((req, res) => {
			fetches += 1;

			if (failing) {
				res.writeHead(502).end();
				return;
			}

			res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify({ keys: published }));
		});
		await new Promise<void>((resolve) => {
			server.listen(0, "127.0.0.1", resolve);
		});
		url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
	});

	after(() => {
		server.close();
	});

	test("fetched once and kept; a rotated key is fetched when first seen", async () => {
		const check = CreateGateIdentityCheck({ issuer: ISSUER, jwksUrl: url });

		fetches = 0;
		assert.equal((await check(Headers(await Sign(first)))).kind, "valid");
		assert.equal((await check(Headers(await Sign(first)))).kind, "valid");
		assert.equal(fetches, 1);

		// The gate rotates: it publishes both and signs with the new one.
		published = [second.jwk, first.jwk];
		assert.equal((await check(Headers(await Sign(second)))).kind, "valid");
		assert.equal((await check(Headers(await Sign(first)))).kind, "valid");
		assert.equal(fetches, 2);
	});

	test("a kid the gate never published is refused after one more look", async () => {
		const check = CreateGateIdentityCheck({ issuer: ISSUER, jwksUrl: url });
		const stranger = await NewSigner("stranger");

		AssertRefused(await check(Headers(await Sign(stranger))), 401, /key the gate does not publish/u);
	});

	test("the default JWKS URL is the issuer's /.well-known/jwks.json", async () => {
		const issuer = url.replace("/.well-known/jwks.json", "");
		const check = CreateGateIdentityCheck({ issuer });

		assert.equal((await check(Headers(await Sign(first, { iss: issuer })))).kind, "valid");
	});

	test("a JWKS that cannot be fetched: 503, not 401", async () => {
		failing = true;

		try {
			const check = CreateGateIdentityCheck({ issuer: ISSUER, jwksUrl: url });
			const result = await check(Headers(await Sign(first)));

			assert.equal(result.kind, "refused");
			assert.equal(result.kind === "refused" && result.status, 503);
		} finally {
			failing = false;
		}
	});
});

describe("configuration from the environment", () => {
	test("without TACHI_GATE_ISSUER the check is off: every request falls through", async () => {
		const check = GateIdentityFromEnv({});

		assert.deepEqual(await check(Headers("anything")), { kind: "absent" });
	});

	test("every variable is read", async () => {
		const signer = await NewSigner("env");
		const check = GateIdentityFromEnv({
			TACHI_GATE_ISSUER: ISSUER,
			TACHI_GATE_AUDIENCE: "boku",
			TACHI_GATE_HEADER: "X-Identity",
			TACHI_GATE_PUBLIC_KEY: JSON.stringify(signer.jwk),
			TACHI_GATE_CLOCK_TOLERANCE_SECS: "0",
		});

		assert.equal((await check({ "x-identity": await Sign(signer, { aud: "boku" }) })).kind, "valid");
		AssertRefused(await check({ "x-identity": await Sign(signer) }), 401, /audience/u);
		AssertRefused(
			await check({ "x-identity": await Sign(signer, { aud: "boku", exp: Now() - 2 }) }),
			401,
			/expired/u
		);
	});

	test("both a key and a key file is a mistake", () => {
		assert.throws(
			() =>
				GateIdentityFromEnv({
					TACHI_GATE_ISSUER: ISSUER,
					TACHI_GATE_PUBLIC_KEY: "{}",
					TACHI_GATE_PUBLIC_KEY_FILE: "/nonexistent",
				}),
			/not both/u
		);
	});
});

function Claims(token: string): Record<string, unknown> {
	return JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString()) as Record<string, unknown>;
}
