// Types of scripts/interop.mjs, for test/e2e/59-paho-interop.test.ts.
export declare const VENDORED: string;
export declare const CONFIGURATIONS: Record<"defaults" | "keepalive60" | "recommended", Record<string, string>>;
export declare const SUITES: Record<string, { script: string; tests: number }>;
export declare function freePort(): Promise<number>;
export interface InteropBroker {
  port: number;
  logs: string[];
  url: string;
  close(): Promise<void>;
}
export declare function startBroker(vars?: Record<string, string>): Promise<InteropBroker>;
export declare function startProxy(wsUrl: string): Promise<{ port: number; close(): Promise<void> }>;
export declare function extractSuite(): { dir: string; remove(): void };
export declare function hasPython(): boolean;
export declare function warmUp(wsUrl: string, timeoutMs?: number): Promise<void>;
export interface UnittestReport {
  run: number;
  passed: number;
  failed: string[];
  errored: string[];
  skipped: number;
  seconds: number | undefined;
  ok: boolean;
}
export interface SuiteResult extends UnittestReport {
  script: string;
  code: number | null;
  signal: string | null;
  wallSeconds: number;
  /** seconds per test, from -v announcing each */
  durations: Record<string, number>;
  stdout: string;
  stderr: string;
}
export declare function parseUnittest(text: string): UnittestReport;
export declare function runSuite(opts: { dir: string; script: string; port: number; tests?: string[]; timeoutMs?: number; echo?: boolean }): Promise<SuiteResult>;
export declare function failureOutput(stderr: string, test: string): string;
export declare function runConfiguration(
  vars: Record<string, string>,
  opts?: { suites?: { script: string; tests?: string[]; namespace?: string }[]; parallel?: boolean; echo?: boolean },
): Promise<{ results: SuiteResult[]; brokerLogs: string[] }>;
