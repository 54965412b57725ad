/**
 * Verifies the identity assertion tachi-gate sends with every request it
 * forwards for one of its API keys, and turns it into the auth object Tachi
 * sets for a Bearer key.
 *
 * The assertion is a JWT in the X-Tachi-Identity header, signed by the gate
 * with Ed25519 (alg EdDSA). Its claims: iss (the gate's server.public_url),
 * aud ([identity] audience), sub (the user ID), iat, exp, jti, permissions
 * (an array of names), identifier, client_id (absent for a key made without
 * a client) and token_id (the key's non-secret ID). The gate removes
 * client-sent copies of the header, so a request can only carry one the gate
 * signed, unless it reached the server some other way: hence the signature.
 *
 * This file imports nothing from Tachi (only jose and Node's crypto), so it
 * can be tested alone; Tachi's middleware/auth.ts calls it in a few lines.
 */
import { createLocalJWKSet, createRemoteJWKSet, jwtVerify } from "jose";
import { createPublicKey } from "crypto";
import fs from "fs";
import type { KeyObject } from "crypto";
import type { JSONWebKeySet, JWTPayload, JWTVerifyGetKey } from "jose";

/** What the gate's [identity] section says, as the server sees it. */
export interface GateIdentityConfig {
	/** The gate's server.public_url: the assertion's iss (a trailing "/" is ignored). */
	issuer: string;

	/** The gate's [identity] audience. Default "tachi". */
	audience?: string;

	/** The gate's [identity] header. Default "X-Tachi-Identity". */
	header?: string;

	/**
	 * Where the gate publishes its public keys. Default
	 * `<issuer>/.well-known/jwks.json`; the gate's admin listener serves the
	 * same document, which is handier when the server cannot reach the
	 * public URL. Fetched on first use and kept for ten minutes; a key it
	 * does not hold yet (after `tachi-gate identity rotate`) fetches it again.
	 */
	jwksUrl?: string;

	/**
	 * A public key to verify against instead of the JWKS: an Ed25519 key as
	 * a JWK, a JWKS (`{"keys": [...]}`) or an SPKI PEM. Mutually exclusive
	 * with jwksUrl. Rotation then needs the new key here before the gate
	 * signs with it.
	 */
	publicKey?: string;

	/** Seconds of clock difference allowed on exp, nbf and iat. Default 30. */
	clockToleranceSecs?: number;
}

/**
 * The auth object, in the shape of Tachi's APITokenDocument, as Tachi's
 * auth middleware sets it for a Bearer key.
 */
export interface GateAuth {
	userID: number;

	/**
	 * The key's token ID: never null, as Tachi reads a non-null token as
	 * "an API key, not a session" (utils/user.ts IsRequesterAdmin), and not
	 * the key itself, which the gate never sends on.
	 */
	token: string;
	identifier: string;
	permissions: Partial<Record<string, boolean>>;
	fromAPIClient: string | null;
}

/**
 * absent: no assertion, the request was not made with a gate key; fall through
 * to Tachi's own logic. refused: an assertion that does not verify (401), or
 * the gate's keys could not be fetched (503). valid: the caller is auth.
 */
export type GateIdentityResult =
	| { kind: "absent" }
	| { kind: "refused"; status: 401 | 503; description: string }
	| { kind: "valid"; auth: GateAuth; claims: JWTPayload };

/** Request headers as Node gives them (Express's req.headers). */
export type RequestHeaders = Record<string, Array<string> | string | undefined>;

export type GateIdentityCheck = (headers: RequestHeaders) => Promise<GateIdentityResult>;

export const DEFAULT_HEADER = "X-Tachi-Identity";
export const DEFAULT_AUDIENCE = "tachi";
export const DEFAULT_CLOCK_TOLERANCE_SECS = 30;

// How often an assertion signed with a key the JWKS does not hold may make
// the JWKS be fetched again, and how long the JWKS is kept otherwise.
const JWKS_COOLDOWN_MS = 1000;
const JWKS_CACHE_MAX_AGE_MS = 10 * 60 * 1000;
const JWKS_TIMEOUT_MS = 5000;

const ABSENT: GateIdentityResult = { kind: "absent" };

// The code of the error the key source raises when the keys could not be had
// at all (the JWKS fetch failed), as opposed to an assertion that names no key
// we hold. Errors are told apart by code, as jose's own carry one: instanceof
// fails across two copies of a module.
const KEYS_UNAVAILABLE = "ERR_TACHI_GATE_KEYS_UNAVAILABLE";

/**
 * Makes the check for a configuration. Problems with the configuration itself
 * (no issuer, a key that is not Ed25519, both a JWKS URL and a key) throw
 * here, so that a server fails at start-up rather than on its first request.
 */
export function CreateGateIdentityCheck(config: GateIdentityConfig): GateIdentityCheck {
	// The gate sends server.public_url without a trailing "/".
	const issuer = config.issuer.replace(/\/+$/u, "");

	if (!IsHttpURL(issuer)) {
		throw new Error(
			`tachi-gate identity: the issuer must be the gate's http(s) public URL (got "${issuer}").`
		);
	}

	const audience = config.audience ?? DEFAULT_AUDIENCE;
	const headerName = (config.header ?? DEFAULT_HEADER).toLowerCase();
	const clockTolerance = config.clockToleranceSecs ?? DEFAULT_CLOCK_TOLERANCE_SECS;

	if (!Number.isFinite(clockTolerance) || clockTolerance < 0) {
		throw new Error(
			`tachi-gate identity: the clock tolerance must be a number of seconds (got ${clockTolerance}).`
		);
	}

	if (config.jwksUrl !== undefined && config.publicKey !== undefined) {
		throw new Error("tachi-gate identity: give a JWKS URL or a public key, not both.");
	}

	const getKey =
		config.publicKey === undefined
			? RemoteKeys(config.jwksUrl ?? `${issuer}/.well-known/jwks.json`)
			: StaticKeys(config.publicKey);

	return async (headers) => {
		const value = headers[headerName];

		if (value === undefined) {
			return ABSENT;
		}

		if (typeof value !== "string") {
			return Refused(401, "sent more than once");
		}

		let payload: JWTPayload;

		try {
			({ payload } = await jwtVerify(value, getKey, {
				issuer,
				audience,
				algorithms: ["EdDSA"],
				typ: "JWT",
				clockTolerance,
				requiredClaims: [
					"sub",
					"iat",
					"exp",
					"jti",
					"permissions",
					"identifier",
					"token_id",
				],
			}));
		} catch (err) {
			if (ErrorCode(err) === KEYS_UNAVAILABLE) {
				return {
					kind: "refused",
					status: 503,
					description: "The gate's signing keys could not be fetched; try again shortly.",
				};
			}

			return Refused(401, DescribeFailure(err));
		}

		// jose checks iat's type but not that it is in the past.
		if (typeof payload.iat !== "number" || payload.iat > Date.now() / 1000 + clockTolerance) {
			return Refused(401, "issued in the future");
		}

		const auth = ClaimsToAuth(payload);

		if (typeof auth === "string") {
			return Refused(401, auth);
		}

		return { kind: "valid", auth, claims: payload };
	};
}

/**
 * Reads the configuration from the environment:
 *
 * - TACHI_GATE_ISSUER: the gate's server.public_url. Unset: the check is off
 *   and every request falls through to the server's own logic.
 * - TACHI_GATE_AUDIENCE, TACHI_GATE_HEADER: the gate's [identity] audience and
 *   header, when not the defaults.
 * - TACHI_GATE_JWKS_URL: where to fetch the gate's keys (default
 *   `<issuer>/.well-known/jwks.json`).
 * - TACHI_GATE_PUBLIC_KEY or TACHI_GATE_PUBLIC_KEY_FILE: a JWK, JWKS or PEM
 *   to use instead of fetching the JWKS.
 * - TACHI_GATE_CLOCK_TOLERANCE_SECS: the allowed clock difference (default 30).
 */
export function GateIdentityFromEnv(env: Record<string, string | undefined>): GateIdentityCheck {
	const issuer = NonEmpty(env.TACHI_GATE_ISSUER);

	if (issuer === undefined) {
		return () => Promise.resolve(ABSENT);
	}

	let publicKey = NonEmpty(env.TACHI_GATE_PUBLIC_KEY);
	const publicKeyFile = NonEmpty(env.TACHI_GATE_PUBLIC_KEY_FILE);

	if (publicKeyFile !== undefined) {
		if (publicKey !== undefined) {
			throw new Error(
				"tachi-gate identity: set TACHI_GATE_PUBLIC_KEY or TACHI_GATE_PUBLIC_KEY_FILE, not both."
			);
		}

		publicKey = fs.readFileSync(publicKeyFile, "utf-8");
	}

	const tolerance = NonEmpty(env.TACHI_GATE_CLOCK_TOLERANCE_SECS);

	return CreateGateIdentityCheck({
		issuer,
		audience: NonEmpty(env.TACHI_GATE_AUDIENCE),
		header: NonEmpty(env.TACHI_GATE_HEADER),
		jwksUrl: NonEmpty(env.TACHI_GATE_JWKS_URL),
		publicKey,
		clockToleranceSecs: tolerance === undefined ? undefined : Number(tolerance),
	});
}

/**
 * The claims as Tachi's auth object, or why they cannot be: the claims
 * are signed by the gate, so a failure here means a gate and an adapter
 * that disagree, never a client's doing.
 */
export function ClaimsToAuth(payload: JWTPayload): GateAuth | string {
	const { sub, permissions, identifier } = payload;
	const tokenID = payload.token_id;
	const clientID = payload.client_id;

	// Tachi's user IDs are positive integers; the gate writes them in decimal.
	if (
		typeof sub !== "string" ||
		!/^[1-9][0-9]{0,15}$/u.test(sub) ||
		!Number.isSafeInteger(Number(sub))
	) {
		return "sub is not a user ID";
	}

	if (!Array.isArray(permissions) || !permissions.every((p) => typeof p === "string")) {
		return "permissions is not a list of names";
	}

	if (typeof identifier !== "string") {
		return "identifier is not a string";
	}

	if (typeof tokenID !== "string" || tokenID === "") {
		return "token_id is not a string";
	}

	if (clientID !== undefined && clientID !== null && typeof clientID !== "string") {
		return "client_id is not a string";
	}

	return {
		userID: Number(sub),
		token: tokenID,
		identifier,

		// Tachi keeps permissions as {name: true}. fromEntries defines own
		// properties, so even a name like __proto__ stays a plain key.
		permissions: Object.fromEntries((permissions as Array<string>).map((p) => [p, true])),
		fromAPIClient: typeof clientID === "string" ? clientID : null,
	};
}

function Refused(status: 401, reason: string): GateIdentityResult {
	return {
		kind: "refused",
		status,
		description: `Invalid identity assertion from tachi-gate (${reason}).`,
	};
}

function ErrorCode(err: unknown) {
	const code = (err as { code?: unknown } | null)?.code;

	return typeof code === "string" ? code : undefined;
}

function DescribeFailure(err: unknown): string {
	switch (ErrorCode(err)) {
		case "ERR_JWT_EXPIRED":
			return "expired";
		case "ERR_JWT_CLAIM_VALIDATION_FAILED": {
			const { claim, reason } = err as { claim: string; reason: string };

			if (reason === "missing") {
				return `no ${claim} claim`;
			}

			switch (claim) {
				case "iss":
					return "another issuer";
				case "aud":
					return "another audience";
				case "nbf":
					return "not yet valid";
				case "typ":
					return "not a JWT";
				default:
					return `bad ${claim} claim`;
			}
		}

		case "ERR_JOSE_ALG_NOT_ALLOWED":
			return "algorithm not allowed";
		case "ERR_JWS_SIGNATURE_VERIFICATION_FAILED":
			return "bad signature";
		case "ERR_JWKS_NO_MATCHING_KEY":
		case "ERR_JWKS_MULTIPLE_MATCHING_KEYS":
			return "signed with a key the gate does not publish";
		default:
			return "malformed";
	}
}

function RemoteKeys(url: string): JWTVerifyGetKey {
	if (!IsHttpURL(url)) {
		throw new Error(`tachi-gate identity: the JWKS URL must be http(s) (got "${url}").`);
	}

	const remote = createRemoteJWKSet(new URL(url), {
		cooldownDuration: JWKS_COOLDOWN_MS,
		cacheMaxAge: JWKS_CACHE_MAX_AGE_MS,
		timeoutDuration: JWKS_TIMEOUT_MS,
	});

	return async (protectedHeader, token) => {
		try {
			return await remote(protectedHeader, token);
		} catch (err) {
			const code = ErrorCode(err);

			if (code === "ERR_JWKS_MULTIPLE_MATCHING_KEYS") {
				throw err;
			}

			if (code !== "ERR_JWKS_NO_MATCHING_KEY") {
				// The keys could not be had: the fetch failed (network, timeout, an
				// answer that is not a JWKS) or the gate published a key that cannot
				// be read. Nothing is known about the assertion yet.
				throw Object.assign(new Error(String(err)), { code: KEYS_UNAVAILABLE });
			}

			// The gate may have rotated its key since the JWKS was last fetched,
			// and jose refetches at most once per cooldown: wait it out, then ask
			// once more.
			await new Promise((resolve) => {
				setTimeout(resolve, JWKS_COOLDOWN_MS);
			});

			return remote(protectedHeader, token);
		}
	};
}

function StaticKeys(text: string): JWTVerifyGetKey {
	const trimmed = text.trim();

	if (trimmed.startsWith("-----BEGIN")) {
		const key = Ed25519Key(() => createPublicKey(trimmed));

		return () => key;
	}

	let parsed: unknown;

	try {
		parsed = JSON.parse(trimmed);
	} catch {
		throw new Error("tachi-gate identity: the public key is neither a JWK, a JWKS nor a PEM.");
	}

	if (
		typeof parsed === "object" &&
		parsed !== null &&
		Array.isArray((parsed as { keys?: unknown }).keys)
	) {
		const set = parsed as { keys: Array<Record<string, unknown>> };

		// Check every key now, rather than on the first request that names it.
		for (const jwk of set.keys) {
			Ed25519Key(() => createPublicKey({ key: jwk, format: "jwk" }));
		}

		return createLocalJWKSet(parsed as JSONWebKeySet);
	}

	const key = Ed25519Key(() =>
		createPublicKey({ key: parsed as Record<string, unknown>, format: "jwk" })
	);

	return () => key;
}

function Ed25519Key(make: () => KeyObject): KeyObject {
	let key: KeyObject;

	try {
		key = make();
	} catch (err) {
		throw new Error(`tachi-gate identity: the public key cannot be read (${String(err)}).`);
	}

	if (key.asymmetricKeyType !== "ed25519") {
		throw new Error(
			`tachi-gate identity: the public key must be Ed25519 (got ${
				key.asymmetricKeyType ?? key.type
			}).`
		);
	}

	return key;
}

function IsHttpURL(value: string) {
	try {
		const url = new URL(value);

		return url.protocol === "http:" || url.protocol === "https:";
	} catch {
		return false;
	}
}

function NonEmpty(value: string | undefined) {
	return value === undefined || value.trim() === "" ? undefined : value.trim();
}
