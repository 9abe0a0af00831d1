// MQTT 5 properties to and from a storage column. Binary values (Correlation Data) become
// {"$b": base64}. Used only where a message is stored, never on the QoS 0 path.
import { Buffer } from "node:buffer";
import type { PublishProperties } from "../protocol/codec";

export function propsToText(props: PublishProperties | undefined): string | null {
  if (!props || Object.keys(props).length === 0) return null;
  return JSON.stringify(props, (_key, value: unknown) => {
    if (value && typeof value === "object" && (value as { type?: string }).type === "Buffer") {
      return { $b: Buffer.from((value as { data: number[] }).data).toString("base64") };
    }
    return value;
  });
}

export function propsFromText(text: string | null | undefined): PublishProperties | undefined {
  if (!text) return undefined;
  return JSON.parse(text, (_key, value: unknown) => {
    if (value && typeof value === "object" && typeof (value as { $b?: string }).$b === "string") {
      return Buffer.from((value as { $b: string }).$b, "base64");
    }
    return value;
  }) as PublishProperties;
}
