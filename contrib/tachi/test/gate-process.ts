// Runs the real tachi-gate binary: its CLI on a store, and the gate itself on
// free loopback ports in front of an upstream.
import { execFile, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import type { ChildProcess } from "node:child_process";

/** contrib/tachi, from build/test where the compiled tests run. */
const PACKAGE_ROOT = path.resolve(__dirname, "..", "..");

/** TACHI_GATE_BIN, else ../../target/debug/tachi-gate; relative paths from contrib/tachi. */
export function GateBin() {
	const bin = path.resolve(PACKAGE_ROOT, process.env.TACHI_GATE_BIN ?? "../../target/debug/tachi-gate");

	if (!fs.existsSync(bin)) {
		throw new Error(`no tachi-gate binary at ${bin}: run \`cargo build\` first, or set TACHI_GATE_BIN`);
	}

	return bin;
}

export function FreePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const server = net.createServer();

		server.on("error", reject);
		server.listen(0, "127.0.0.1", () => {
			const { port } = server.address() as net.AddressInfo;

			server.close(() => resolve(port));
		});
	});
}

export interface GateSetup {
	/** Extra TOML appended to the configuration. */
	extraToml?: string;
}

export interface Gate {
	url: string;
	adminUrl: string;
	dir: string;
	dataDir: string;
	configPath: string;
	adminToken: string;
	/** Runs `tachi-gate --config <config> <args>` and parses its JSON answer. */
	cli(args: Array<string>, options?: { admin?: boolean }): Promise<unknown>;
	start(upstreamPort: number): Promise<void>;
	stop(): Promise<void>;
	/** What the gate wrote to stderr so far. */
	log(): string;
}

/**
 * A gate's configuration and store in a new temporary directory, with its
 * ports chosen; `start` runs it. Keys can be made with `cli` before and after.
 */
export async function PrepareGate(setup: GateSetup = {}): Promise<Gate> {
	const bin = GateBin();
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tachi-gate-adapter-"));
	const dataDir = path.join(dir, "store");
	const configPath = path.join(dir, "tachi-gate.toml");
	const port = await FreePort();
	const adminPort = await FreePort();
	const url = `http://127.0.0.1:${port}`;
	const adminUrl = `http://127.0.0.1:${adminPort}`;
	const adminToken = `admin-${Math.random().toString(16).slice(2)}${Math.random().toString(16).slice(2)}`;
	let child: ChildProcess | undefined;
	let stderr = "";

	const env = { ...process.env, TACHI_GATE_ADMIN_TOKEN: adminToken, RUST_LOG: "warn" };

	function WriteConfig(upstreamPort: number) {
		fs.writeFileSync(
			configPath,
			`[server]
listen = "127.0.0.1:${port}"
admin_listen = "127.0.0.1:${adminPort}"
public_url = "${url}"

[upstream]
addrs = ["127.0.0.1:${upstreamPort}"]

[store]
path = "${dataDir}"

[identity]
mode = "jwt"

[limits]
enabled = false

[[auth.policy]]
methods = ["POST"]
path_prefix = "/ir/"
require = ["submit_score"]
${setup.extraToml ?? ""}
`
		);
	}

	// The CLI needs a configuration to find the store before the gate starts.
	WriteConfig(1);

	const gate: Gate = {
		url,
		adminUrl,
		dir,
		dataDir,
		configPath,
		adminToken,
		cli(args, options = {}) {
			const full = options.admin
				? ["--config", configPath, "--admin", adminUrl, ...args]
				: ["--config", configPath, ...args];

			return new Promise((resolve, reject) => {
				execFile(bin, full, { env, timeout: 20_000 }, (err, stdout, stderrOut) => {
					if (err) {
						reject(new Error(`tachi-gate ${full.join(" ")} failed: ${err.message}\n${stderrOut}`));
						return;
					}

					try {
						resolve(JSON.parse(stdout) as unknown);
					} catch {
						reject(new Error(`tachi-gate ${full.join(" ")} printed no JSON: ${stdout}\n${stderrOut}`));
					}
				});
			});
		},
		async start(upstreamPort) {
			WriteConfig(upstreamPort);
			child = spawn(bin, ["--config", configPath], { env, stdio: ["ignore", "ignore", "pipe"] });
			child.stderr?.on("data", (chunk: Buffer) => {
				stderr += chunk.toString();
			});

			const exited = new Promise<never>((_resolve, reject) => {
				child?.on("exit", (code) => reject(new Error(`tachi-gate exited (${code}) on start-up:\n${stderr}`)));
			});

			const deadline = Date.now() + 30_000;

			// Ready when the admin listener answers /healthz.
			for (;;) {
				const ready = await Promise.race([
					fetch(`${adminUrl}/healthz`).then(
						(r) => r.status === 200,
						() => false
					),
					exited,
				]);

				if (ready) {
					break;
				}

				if (Date.now() > deadline) {
					throw new Error(`tachi-gate did not become ready:\n${stderr}`);
				}

				await new Promise((resolve) => {
					setTimeout(resolve, 50);
				});
			}

			exited.catch(() => undefined);
		},
		async stop() {
			if (child && child.exitCode === null) {
				const done = new Promise((resolve) => {
					child?.once("exit", resolve);
				});

				child.kill("SIGTERM");
				await done;
			}

			fs.rmSync(dir, { recursive: true, force: true });
		},
		log: () => stderr,
	};

	return gate;
}
