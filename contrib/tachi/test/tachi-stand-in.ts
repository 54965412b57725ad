// A stand-in for Tachi's server: an Express app with the shape of Tachi's
// auth middleware chain (server/src/server/middleware/auth.ts) as
// tachi-server.patch leaves it, and a few routes that say what they saw.
//
// The adapter runs first; with no assertion, Tachi's own logic runs (a
// session, else Tachi's own Bearer keys, else the guest token); then
// RejectIfBanned. Tachi's own parts are written here from their behaviour,
// on in-memory users, sessions and keys.
import express from "express";
import type { GateAuth, GateIdentityCheck } from "../src/gate-identity";
import type { NextFunction, Request, RequestHandler, Response } from "express";
import type { AddressInfo } from "node:net";
import type http from "node:http";

export const SYMBOL_TACHI_API_AUTH = Symbol("tachi-api-auth-info");

// Tachi's APITokenDocument.
export interface TachiAuth {
	userID: number | null;
	token: string | null;
	identifier: string;
	permissions: Partial<Record<string, boolean>>;
	fromAPIClient: string | null;
}

type AuthedRequest = Request & { [SYMBOL_TACHI_API_AUTH]?: TachiAuth };

export const ALL_PERMISSIONS = {
	customise_profile: true,
	customise_score: true,
	customise_session: true,
	delete_score: true,
	manage_rivals: true,
	manage_targets: true,
	submit_score: true,
	manage_challenges: true,
};

export const GUEST_TOKEN: TachiAuth = {
	token: null,
	userID: null,
	identifier: "Guest Token",
	permissions: {},
	fromAPIClient: null,
};

export const NAME = "Bokutachi";

/** What the stand-in holds and what it saw. */
export interface StandInState {
	banned: Set<number>;
	/** connect.sid cookie values and their users. */
	sessions: Map<string, number>;
	/** Keys Tachi issued itself, by key. */
	tachiKeys: Map<string, TachiAuth>;
	/** Every request that reached the server, as "METHOD /path". */
	hits: Array<string>;
}

export interface StandIn {
	url: string;
	port: number;
	state: StandInState;
	close(): Promise<void>;
}

function AuthOf(req: Request) {
	return (req as AuthedRequest)[SYMBOL_TACHI_API_AUTH];
}

function SetAuth(req: Request, auth: GateAuth | TachiAuth) {
	(req as AuthedRequest)[SYMBOL_TACHI_API_AUTH] = auth;
}

function SessionUser(req: Request, state: StandInState) {
	const cookie = req.header("Cookie") ?? "";
	const match = /(?:^|;\s*)connect\.sid=([^;]*)/u.exec(cookie);

	return match?.[1] === undefined ? undefined : state.sessions.get(match[1]);
}

export async function StartStandIn(check: GateIdentityCheck): Promise<StandIn> {
	const state: StandInState = {
		banned: new Set(),
		sessions: new Map(),
		tachiKeys: new Map(),
		hits: [],
	};

	// Tachi's RejectIfBanned.
	const RejectIfBanned: RequestHandler = (req, res, next) => {
		const auth = AuthOf(req);

		if (auth && auth.userID !== null && state.banned.has(auth.userID)) {
			return res.status(403).json({ success: false, description: `You are banned from ${NAME}` });
		}

		next();
	};

	// Tachi's CreateSetRequestPermissions, with the lines the patch adds first.
	function CreateSetRequestPermissions(errorKeyName: string): Array<RequestHandler> {
		return [
			async (req: Request, res: Response, next: NextFunction) => {
				// --- the patch's lines ---
				const gate = await check(req.headers);

				if (gate.kind === "refused") {
					return res.status(gate.status).json({ success: false, [errorKeyName]: gate.description });
				}

				if (gate.kind === "valid") {
					SetAuth(req, gate.auth);
					next();
					return;
				}
				// --- Tachi's own logic from here on ---

				const sessionUser = SessionUser(req, state);

				if (sessionUser !== undefined) {
					SetAuth(req, {
						userID: sessionUser,
						identifier: `Session-Key ${sessionUser}`,
						token: null,
						permissions: ALL_PERMISSIONS,
						fromAPIClient: null,
					});
					next();
					return;
				}

				const header = req.header("Authorization");

				if (header === undefined || header === "") {
					SetAuth(req, GUEST_TOKEN);
					next();
					return;
				}

				const [type, token] = header.split(" ");

				if (type !== "Bearer") {
					return res
						.status(400)
						.json({ success: false, [errorKeyName]: "Invalid Authorization Type - Expected Bearer." });
				}

				if (!token) {
					return res.status(401).json({ success: false, [errorKeyName]: "Invalid token." });
				}

				const doc = state.tachiKeys.get(token);

				if (!doc) {
					return res.status(401).json({
						success: false,
						[errorKeyName]: "The provided API token does not correspond with any key in the database.",
					});
				}

				SetAuth(req, { ...doc, token });
				next();
			},
			RejectIfBanned,
		];
	}

	const SetRequestPermissions = CreateSetRequestPermissions("description");
	const SetFervidexStyleRequestPermissions = CreateSetRequestPermissions("error");

	// Tachi's RequireNotGuest and RequirePermissions.
	const RequireNotGuest: RequestHandler = (req, res, next) => {
		if (AuthOf(req)?.userID === null) {
			return res.status(401).json({ success: false, description: "This endpoint requires authentication." });
		}

		next();
	};

	const RequirePermissions =
		(...perms: Array<string>): RequestHandler =>
		(req, res, next) => {
			const missing = perms.filter((p) => AuthOf(req)?.permissions[p] !== true);

			if (missing.length > 0) {
				return res.status(403).json({
					success: false,
					description: `You are missing the following permissions necessary for this request: ${missing.join(", ")}`,
				});
			}

			next();
		};

	// What a route tells the tests: the auth it got and the identity headers it was sent.
	const Echo: RequestHandler = (req, res) => {
		res.status(200).json({
			success: true,
			description: "Echo.",
			body: {
				auth: AuthOf(req),
				userIDHeader: req.header("X-Tachi-User-ID") ?? null,
				assertion: req.header("X-Tachi-Identity") ?? null,
				authorization: req.header("Authorization") ?? null,
			},
		});
	};

	const app = express();

	app.use((req, _res, next) => {
		state.hits.push(`${req.method} ${req.path}`);
		next();
	});
	app.use(express.json());

	// Tachi's router: RejectIfBanned (a no-op before auth is set), the score
	// hooks with their own SetRequestPermissions, then everything else.
	app.use(RejectIfBanned);
	app.use(
		"/ir/direct-manual",
		SetRequestPermissions,
		RequireNotGuest,
		express
			.Router()
			.post("/import", RequirePermissions("submit_score"), (req, res) =>
				res.status(200).json({
					success: true,
					description: "Import loaded into ImportDocument.",
					body: { userID: AuthOf(req)?.userID, scores: (req.body as { scores?: Array<unknown> }).scores?.length ?? 0 },
				})
			)
	);
	app.use("/ir/fervidex", SetFervidexStyleRequestPermissions, express.Router().post("/score/submit", Echo));

	app.use(SetRequestPermissions);

	// Tachi's status route, which the gate asks about sessions.
	app.get("/api/v1/status", (req, res) => {
		const auth = AuthOf(req) ?? GUEST_TOKEN;

		res.status(200).json({
			success: true,
			description: "Status check successful.",
			body: {
				serverTime: Date.now(),
				whoami: auth.userID,
				permissions: Object.entries(auth.permissions)
					.filter((e) => e[1])
					.map((e) => e[0]),
			},
		});
	});
	app.get("/api/v1/echo", Echo);
	app.post("/api/v1/echo", Echo);

	const server: http.Server = await new Promise((resolve) => {
		const s = app.listen(0, "127.0.0.1", () => resolve(s));
	});
	const port = (server.address() as AddressInfo).port;

	return {
		url: `http://127.0.0.1:${port}`,
		port,
		state,
		close: () =>
			new Promise((resolve) => {
				server.closeAllConnections();
				server.close(() => resolve());
			}),
	};
}
