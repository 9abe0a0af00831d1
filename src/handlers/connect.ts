import { MAX_MQTT_PACKET, MAX_PACKET_ID } from "../protocol/limits";
import type { HandlerContext } from "./context";
import type { Connection } from "../broker/connection";
import type { ConnectPacket, ProtocolVersion, QoS } from "../protocol/codec";
import { ConnectRefused, protocolError } from "../protocol/errors";
import { RC } from "../protocol/reason-codes";
import type { Will } from "../session/session";
import { resume } from "../session/delivery";
import { isValidTopicName, withinTopicLimits } from "../topics/validate";
import type { Grant } from "../auth/grant";
import { mayPublish } from "../auth/rights";
import { isUtf8 } from "../protocol/utf8";
import type { BrokerConfig } from "../config";

/**
 * First step of CONNECT: who is this? Returns the grant, or a promise of it when verification
 * is asynchronous. Nothing is stored or changed before the verdict, so a refused client cannot
 * take over a session or leave a will [MQTT-3.1.4-2/3].
 */
export function authenticateConnect(ctx: HandlerContext, conn: Connection, p: ConnectPacket): Grant | Promise<Grant> {
  conn.version = p.protocolVersion as ProtocolVersion; // a refusal's CONNACK speaks the client's version
  // A bridge's own socket (see bridge/header.ts): all topics, and a session only it may take.
  if (conn.bridge !== undefined) return { identity: `bridge:${conn.bridge}`, publish: ["#"], subscribe: ["#"] };
  return ctx.auth.authenticate(p, conn.address);
}

/** Second step, synchronous: limits, the will's rights, takeover, the session and CONNACK. */
export function handleConnect(ctx: HandlerContext, conn: Connection, p: ConnectPacket, grant: Grant): void {
  const version = p.protocolVersion as ProtocolVersion;
  conn.version = version;
  const props = p.properties;
  const config = ctx.config;

  let clientId = p.clientId;
  let assigned = false;
  if (clientId === "") {
    // [MQTT-3.1.3-8] MQTT 3.1.1: an empty id needs clean session
    if (version !== 5 && !p.clean) throw new ConnectRefused(RC.CLIENT_IDENTIFIER_NOT_VALID, "empty client id requires clean session");
    assigned = true;
    if (grant.clientId !== undefined) {
      clientId = grant.clientId; // a token may pin the id
      // Several shards: the id's session lives at its home, which a socket reaches with the id in its CONNECT (or the ?client= hint)
      if (ctx.isHome && !ctx.isHome(clientId)) throw new ConnectRefused(RC.CLIENT_IDENTIFIER_NOT_VALID, "with several shards, send the token's client id in CONNECT or connect with ?client=<id>");
    } else {
      // one whose home is this shard (several shards): its next connection, placed by the id, finds the session
      do clientId = `auto-${crypto.randomUUID()}`;
      while (ctx.isHome && !ctx.isHome(clientId));
    }
  }
  if (clientId.length > config.MAX_CLIENT_ID_LENGTH) {
    throw new ConnectRefused(RC.CLIENT_IDENTIFIER_NOT_VALID, "client id too long");
  }
  // `bridge/<name>` is the session of a bridge (its queue of messages for the remote): only that
  // bridge's own socket may take it, and a bridge socket takes nothing else. Without this, any client
  // (with AUTH_MODE none: anyone) could resume it and drain the queue, or create it first and lock
  // the bridge out.
  if (conn.bridge !== undefined ? clientId !== `bridge/${conn.bridge}` : clientId.startsWith("bridge/")) {
    throw new ConnectRefused(RC.CLIENT_IDENTIFIER_NOT_VALID, conn.bridge !== undefined ? "a bridge connects as bridge/<its name>" : "client ids starting with bridge/ are reserved for the broker's bridges");
  }
  // The session this client id holds now, if any (nothing below changes it before the takeover).
  const known = ctx.sessions.get(clientId);
  // Another user's session is refused before anything changes: no takeover, no Clean Start.
  if (known) ctx.auth.checkOwner(known.owner, grant, clientId);
  const rights = ctx.auth.rights(grant, clientId);
  conn.grant = grant;
  conn.publishAcl = rights.publish;
  conn.readAcl = rights.read;
  const will = willOf(p);
  if (will) {
    if (!withinTopicLimits(will.topic, config.MAX_TOPIC_LENGTH, config.MAX_TOPIC_LEVELS)) {
      throw new ConnectRefused(RC.TOPIC_NAME_INVALID, "will topic exceeds the topic limits");
    }
    // A will obeys the publish rules of its client; `$` topics are the broker's.
    if (!mayPublish(conn, will.topic)) throw new ConnectRefused(RC.NOT_AUTHORIZED, "will topic not allowed");
  }
  if (config.MAX_CONNECTIONS > 0 && !known?.conn && ctx.connectedCount() >= config.MAX_CONNECTIONS) {
    throw new ConnectRefused(RC.QUOTA_EXCEEDED, "too many connections in this namespace");
  }
  if (version === 5) {
    if (props?.receiveMaximum === 0) throw protocolError("Receive Maximum 0");
    if (props?.maximumPacketSize === 0) throw protocolError("Maximum Packet Size 0");
    conn.receiveMaximum = props?.receiveMaximum ?? MAX_PACKET_ID;
    conn.maxPacketSize = props?.maximumPacketSize ?? MAX_MQTT_PACKET;
    conn.topicAliasMaximum = props?.topicAliasMaximum ?? 0;
    conn.problemInformation = props?.requestProblemInformation !== false;
  }

  const asked = p.keepalive ?? 0;
  // A bridge's socket (keep-alive 0) is exempt: its PINGREQs would wake the hibernated object for
  // nothing, and the runtime closes the socket when the bridge object goes.
  const keepalive = version === 5 && conn.bridge === undefined ? keepAlivePolicy(asked, config) : asked;
  const serverKeepAlive = keepalive !== asked;

  const requestedExpiry = version === 5 ? (props?.sessionExpiryInterval ?? 0) : p.clean ? 0 : config.MAX_SESSION_EXPIRY;
  const expiry = Math.min(requestedExpiry, config.MAX_SESSION_EXPIRY);
  // A session kept for a client that left costs memory at every wake: their number is bounded.
  // Over it a new persistent session is refused; the existing ones are never evicted for it.
  if (config.MAX_SESSIONS > 0 && expiry > 0 && (!known || p.clean || !known.persistent) && ctx.sessions.persistentCount(known) >= config.MAX_SESSIONS) {
    throw new ConnectRefused(RC.QUOTA_EXCEEDED, "too many sessions in this namespace");
  }

  // Session takeover [MQTT-3.1.4-3]: the old connection is closed (its will goes out by the usual rules).
  if (known?.conn) ctx.takeover(known);

  conn.accept(clientId, version, keepalive);
  // a session of nobody's becomes the identity's
  const { session, present: sessionPresent } = ctx.sessions.open(conn, { clientId, clean: !!p.clean, version, expiry, will, grant, owner: grant.identity ?? null });
  conn.session = session;

  if (version === 5) {
    const ackProps: NonNullable<import("mqtt-packet").IConnackPacket["properties"]> = {
      receiveMaximum: config.RECEIVE_MAXIMUM,
      maximumPacketSize: config.MAX_PACKET_SIZE,
      topicAliasMaximum: config.TOPIC_ALIAS_MAXIMUM,
      retainAvailable: true,
      wildcardSubscriptionAvailable: true,
      subscriptionIdentifiersAvailable: true,
      sharedSubscriptionAvailable: true,
    };
    if (assigned) ackProps.assignedClientIdentifier = clientId;
    if (props?.requestResponseInformation && config.RESPONSE_INFORMATION_PREFIX) {
      ackProps.responseInformation = config.RESPONSE_INFORMATION_PREFIX + clientId;
    }
    if (serverKeepAlive) ackProps.serverKeepAlive = keepalive;
    if (expiry !== requestedExpiry) ackProps.sessionExpiryInterval = expiry;
    conn.send({ cmd: "connack", sessionPresent, reasonCode: RC.SUCCESS, properties: ackProps });
  } else {
    conn.send({ cmd: "connack", sessionPresent, returnCode: 0 });
  }
  // CONNACK in a frame of its own: a client that starts listening once connected (e.g. MQTT.js
  // `await connectAsync()`, then `on("message")`) would miss messages parsed along with it.
  conn.flush();
  const deadline = conn.deadline;
  if (deadline !== null) ctx.wakeAt(deadline);
  const tokenExpiry = conn.tokenDeadline;
  if (tokenExpiry !== null) ctx.wakeAt(tokenExpiry);
  if (sessionPresent) resume(ctx, session);
  ctx.lifecycle.connected(conn, session, !!p.clean, sessionPresent);
}

function willOf(p: ConnectPacket): Will | null {
  const w = p.will;
  if (!w) return null;
  // [MQTT-3.1.2-9] / 5.0: the will topic must be a valid topic name
  if (!isValidTopicName(w.topic)) throw new ConnectRefused(RC.TOPIC_NAME_INVALID, "invalid will topic");
  const props = w.properties;
  // [MQTT-3.1.3-11] a will payload announced as UTF-8 must be UTF-8
  if (props?.payloadFormatIndicator && !isUtf8(w.payload as Uint8Array)) {
    throw new ConnectRefused(RC.PAYLOAD_FORMAT_INVALID, "will payload is not UTF-8");
  }
  const will: Will = {
    topic: w.topic,
    payload: w.payload as Uint8Array,
    qos: w.qos as QoS,
    retain: !!w.retain,
    delay: p.protocolVersion === 5 ? (props?.willDelayInterval ?? 0) : 0,
  };
  if (props) {
    const { willDelayInterval: _delay, ...rest } = props;
    if (Object.keys(rest).length) will.properties = rest;
  }
  return will;
}

/**
 * The keep-alive an MQTT 5 client is given (Server Keep Alive when it differs from what it
 * asked): at most MAX_KEEPALIVE (also instead of 0), at least MIN_KEEPALIVE (0 stays 0 unless
 * MAX_KEEPALIVE says otherwise). MIN above MAX: MAX wins.
 */
export function keepAlivePolicy(asked: number, config: Pick<BrokerConfig, "MAX_KEEPALIVE" | "MIN_KEEPALIVE">): number {
  const { MAX_KEEPALIVE: max, MIN_KEEPALIVE: min } = config;
  if (max > 0 && (asked === 0 || asked > max)) return max;
  if (min > 0 && asked > 0 && asked < min) return max > 0 ? Math.min(min, max) : Math.min(min, 65535);
  return asked;
}
