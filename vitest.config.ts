import { defineConfig } from "vitest/config";
import { cloudflareTest } from "@cloudflare/vitest-pool-workers";

export default defineConfig({
  test: {
    projects: [
      {
        // Plain Node: pure logic, and real MQTT.js clients against the built worker in workerd.
        test: {
          name: "node",
          include: ["test/unit/**/*.test.ts", "test/model/**/*.test.ts", "test/e2e/**/*.test.ts"],
          environment: "node",
          testTimeout: 30_000,
          hookTimeout: 30_000,
        },
      },
      {
        // Inside workerd: the SQLite store and the Durable Object's entry points.
        plugins: [cloudflareTest({ main: "./src/index.ts", wrangler: { configPath: "./wrangler.toml" } })],
        test: {
          name: "workers",
          include: ["test/workers/**/*.test.ts"],
          // mqtt-packet pulls readable-stream (CommonJS) in; pre-bundle it as wrangler's esbuild does.
          deps: { optimizer: { ssr: { enabled: true, include: ["mqtt-packet"] } } },
        },
      },
    ],
  },
});
