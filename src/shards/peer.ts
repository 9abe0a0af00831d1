// What one shard of a namespace sends another (docs/scale-out.md §3): the link's batches and
// their acknowledgements. The receiving object implements `shardLink` (broker/namespace-do.ts).

/** One call on the link from shard `from` to the callee: FIFO, at most one outstanding per pair. */
export interface LinkBatch {
  from: number;
  /** durable chunks (stored in the sender's shard_outbox), consecutive seqs, oldest first */
  chunks: { seq: number; entries: Uint8Array }[];
  /** QoS 0 entries (never stored): each run is applied right after chunk `after` (0: before any) */
  volatile: { after: number; entries: Uint8Array }[];
}

export interface LinkAck {
  /** the callee's watermark for `from` after this call: every chunk up to it is applied */
  applied: number;
}
