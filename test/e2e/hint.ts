// The placement hint (docs/scale-out.md §1) that every test client adds: `?client=<id>` sends the
// connection to the id's home shard, so a reconnect with the same id finds its session on the
// same shard. Only when the URL has no query yet; the Worker ignores it at K = 1. `E2E_HINT=0`
// leaves it off: every socket then lands on a random shard and reaches its session through a tunnel.
export function hinted(url: string, clientId: string | undefined): string {
  return process.env.E2E_HINT !== "0" && clientId && !url.includes("?") ? `${url}?client=${encodeURIComponent(clientId)}` : url;
}
