// The placement hint (docs/scale-out.md §1) that every test client adds: `?client=<id>` sends the
// connection to the id's home shard, so a reconnect with the same id finds its session on the
// same shard. Only when the URL has no query yet; the Worker ignores it at K = 1.
export function hinted(url: string, clientId: string | undefined): string {
  return clientId && !url.includes("?") ? `${url}?client=${encodeURIComponent(clientId)}` : url;
}
