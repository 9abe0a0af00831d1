// Aedes (in-memory persistence) over WebSocket, in its own process so its CPU and memory can be read.
import http from "node:http";
import { WebSocketServer, createWebSocketStream } from "ws";
import { Aedes } from "aedes";

const port = Number(process.argv[2]);
const aedes = await Aedes.createBroker();
const server = http.createServer();
const wss = new WebSocketServer({ server, perMessageDeflate: false, handleProtocols: (protocols) => (protocols.has("mqtt") ? "mqtt" : false) });
wss.on("connection", (socket, req) => aedes.handle(createWebSocketStream(socket), req));
aedes.on("clientError", () => {});
aedes.on("connectionError", () => {});
server.listen(port, "127.0.0.1", () => process.stdout.write("ready\n"));
