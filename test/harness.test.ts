/**
 * The test harness itself, where a shortcut of its own could let a test pass that production would fail: the
 * simulated engine (test/support/providerHost.ts) encodes and decodes protobuf strings with Node's native UTF-8
 * instead of google-protobuf's JavaScript loop, so its bytes must be google-protobuf's own, both ways.
 */
import * as providerProto from "@pulumi/pulumi/proto/provider_pb";
import { Struct } from "google-protobuf/google/protobuf/struct_pb";
import "./support/providerHost";

type Codec = { proto: typeof providerProto; Struct: typeof Struct };

/** google-protobuf and Pulumi's stubs as a process that never loaded the harness has them. */
function untouchedCodec(): Codec {
    let codec: Codec | undefined;
    jest.isolateModules(() => {
        codec = {
            // eslint-disable-next-line @typescript-eslint/no-require-imports -- a second, unpatched copy of the modules
            proto: require("@pulumi/pulumi/proto/provider_pb") as typeof providerProto,
            // eslint-disable-next-line @typescript-eslint/no-require-imports -- the same registry as the stubs above
            Struct: (require("google-protobuf/google/protobuf/struct_pb") as { Struct: typeof Struct }).Struct,
        };
    });
    return codec!;
}

it("writes and reads provider requests byte for byte as google-protobuf does", () => {
    const untouched = untouchedCodec();
    expect(untouched.Struct).not.toBe(Struct);
    const olds = {
        __provider: "exports.handler = __f0; // é, 漢字, 😀 and a lone \u00ff\n".repeat(2000),
        instanceUrl: "https://contoso.crm.dynamics.com",
        privileges: [{ name: "prvReadAsyncOperation", depth: "Global" }],
        count: 3,
        flag: true,
        none: null,
    };
    const request = ({ proto, Struct: S }: Codec) => {
        const r = new proto.CheckRequest();
        r.setUrn("urn:pulumi:test::lead-management::pulumi-nodejs:dynamic:Resource::solution");
        r.setOlds(S.fromJavaScript(olds));
        r.setNews(S.fromJavaScript({ name: "ünïcödé" }));
        return r.serializeBinary();
    };
    const harnessBytes = request({ proto: providerProto, Struct });
    const untouchedBytes = request(untouched);
    expect(Buffer.from(harnessBytes).equals(Buffer.from(untouchedBytes))).toBe(true);
    expect(untouched.proto.CheckRequest.deserializeBinary(harnessBytes).getOlds()!.toJavaScript()).toEqual(olds);
    expect(providerProto.CheckRequest.deserializeBinary(untouchedBytes).getOlds()!.toJavaScript()).toEqual(olds);
    expect(providerProto.CheckRequest.deserializeBinary(untouchedBytes).getNews()!.toJavaScript()).toEqual({ name: "ünïcödé" });
});
