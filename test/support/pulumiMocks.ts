import * as pulumi from "@pulumi/pulumi";
import {
    MOCK_TENANT_ID,
    DYNAMICS_CRM_APP_ID,
    DYNAMICS_CRM_SP_OBJECT_ID,
    USER_IMPERSONATION_SCOPE_ID,
    MOCK_SECRET_VALUE,
    MOCK_SYSTEM_USER_ID,
    MOCK_PASSWORD,
    MOCK_USER_OBJECT_ID,
    SECRET_SIG,
    MOCK_SKU_ID,
    MOCK_ROLE_ID,
} from "./mockValues";

/** A resource as the program declared it, seen through Pulumi's mocks and a transformation. */
export interface DeclaredResource {
    type: string;
    name: string;
    inputs: Record<string, unknown>;
    /** Name of the parent resource, if any. */
    parent?: string;
    opts: pulumi.ResourceOptions;
}

/** What the mocked providers return for each resource type, beyond echoing the inputs. */
function mockState(type: string, name: string, inputs: Record<string, unknown>): Record<string, unknown> {
    switch (type) {
        case "azuread:index/application:Application":
            return { ...inputs, clientId: "11111111-2222-4333-8444-555555555555", objectId: `obj-${name}` };
        case "azuread:index/servicePrincipal:ServicePrincipal":
            return { ...inputs, objectId: `sp-${name}` };
        case "azuread:index/applicationPassword:ApplicationPassword":
            return { ...inputs, keyId: `key-${name}`, value: MOCK_SECRET_VALUE };
        case "pulumi-nodejs:dynamic/dataverse:Solution":
            return { ...inputs, uniqueName: "MicrosoftMarketplacesLeadIntegrationSolution", installedVersion: "1.0.0.0", adopted: false };
        case "azuread:index/user:User":
            return { ...inputs, objectId: MOCK_USER_OBJECT_ID };
        case "random:index/randomPassword:RandomPassword":
            return { ...inputs, result: MOCK_PASSWORD };
        case "pulumi-nodejs:dynamic/graph:UserLicense":
            return { ...inputs, skuId: MOCK_SKU_ID, assigned: true };
        case "pulumi-nodejs:dynamic/dataverse:SyncedUser":
            return { ...inputs, systemUserId: MOCK_SYSTEM_USER_ID, businessUnitId: "bu", isDisabled: false };
        case "pulumi-nodejs:dynamic/dataverse:ApplicationUser":
            return { ...inputs, systemUserId: MOCK_SYSTEM_USER_ID, isDisabled: false };
        case "pulumi-nodejs:dynamic/dataverse:RoleAssignment":
            return { ...inputs, roleId: MOCK_ROLE_ID, businessUnitId: "5b8c3a1d-0000-4000-8000-0000000000b0" };
        case "pulumi-nodejs:dynamic/dataverse:LeadValidation":
            return {
                ...inputs,
                systemUserId: MOCK_SYSTEM_USER_ID,
                testName: "MSFT_TEST_639000000000000000",
                validatedAt: "2026-11-28T00:00:00.000Z",
            };
        case "azure-native:keyvault:Secret": {
            // Under mocks a secret nested in `properties` arrives as the whole object wrapped as a secret.
            const wrapped = inputs.properties as Record<string, unknown>;
            const properties = (SECRET_SIG in wrapped ? wrapped.value : wrapped) as Record<string, unknown>;
            return {
                ...inputs,
                properties: {
                    ...properties,
                    secretUri: `https://${String(inputs.vaultName)}.vault.azure.net/secrets/${String(inputs.secretName)}`,
                },
            };
        }
        default:
            return inputs;
    }
}

export interface MockRun {
    /** Resources in declaration order, as the mocks saw their inputs. */
    resources: Map<string, DeclaredResource>;
    /** Invokes (data sources) the program made, by token. */
    calls: { token: string; inputs: Record<string, unknown> }[];
    /** Transformation to put on the top-level component so every child's options are recorded. */
    record: pulumi.ResourceTransformation;
    /** Resolves once the mocks have registered the named resource (inputs known). */
    declared(name: string): Promise<DeclaredResource>;
}

/** Installs Pulumi's mock runtime with Azure AD's data sources answered as a real tenant would. */
export function installMocks(
    options: {
        preview?: boolean;
        onNewResource?: (args: pulumi.runtime.MockResourceArgs) => void;
        /** Extra outputs a resource type's mocked provider returns, e.g. the `warnings` a real provider may report. */
        outputs?: Record<string, Record<string, unknown>>;
    } = {},
): MockRun {
    const waiters = new Map<string, ((r: DeclaredResource) => void)[]>();
    const registered = new Set<string>();
    const run: MockRun = {
        resources: new Map(),
        calls: [],
        record: () => undefined,
        declared: (name) =>
            new Promise((resolve) => {
                if (registered.has(name)) return resolve(run.resources.get(name)!);
                waiters.set(name, [...(waiters.get(name) ?? []), resolve]);
            }),
    };
    const names = new Map<pulumi.Resource, string>();
    run.record = (args) => {
        names.set(args.resource, args.name);
        const entry = run.resources.get(args.name);
        const parent = args.opts.parent ? names.get(args.opts.parent) : undefined;
        if (entry) {
            entry.parent = parent;
            entry.opts = args.opts;
        } else {
            run.resources.set(args.name, { type: args.type, name: args.name, inputs: {}, parent, opts: args.opts });
        }
        return undefined;
    };
    pulumi.runtime.setMocks(
        {
            newResource(args) {
                options.onNewResource?.(args);
                const state = { ...mockState(args.type, args.name, args.inputs), ...options.outputs?.[args.type] };
                const entry = run.resources.get(args.name);
                if (entry) {
                    entry.inputs = args.inputs;
                } else {
                    run.resources.set(args.name, { type: args.type, name: args.name, inputs: args.inputs, opts: {} });
                }
                registered.add(args.name);
                for (const resolve of waiters.get(args.name) ?? []) resolve(run.resources.get(args.name)!);
                waiters.delete(args.name);
                return { id: `${args.name}-id`, state };
            },
            call(args) {
                run.calls.push({ token: args.token, inputs: args.inputs });
                switch (args.token) {
                    case "azuread:index/getApplicationPublishedAppIds:getApplicationPublishedAppIds":
                        return { result: { DynamicsCrm: DYNAMICS_CRM_APP_ID, MicrosoftGraph: "00000003-0000-0000-c000-000000000000" } };
                    case "azuread:index/getServicePrincipal:getServicePrincipal":
                        return {
                            clientId: args.inputs.clientId,
                            objectId: DYNAMICS_CRM_SP_OBJECT_ID,
                            oauth2PermissionScopeIds: { user_impersonation: USER_IMPERSONATION_SCOPE_ID },
                        };
                    case "azuread:index/getClientConfig:getClientConfig":
                        return { tenantId: MOCK_TENANT_ID, clientId: "cli", objectId: "me" };
                    default:
                        throw new Error(`unexpected invoke ${args.token}`);
                }
            },
        },
        "lead-management",
        "test",
        options.preview ?? false,
    );
    return run;
}

/** Resolves an Output to its value (known or not) and whether it is secret. */
export async function settle<T>(output: pulumi.Output<T>): Promise<{ value: T; secret: boolean }> {
    const value = await new Promise<T>((resolve) =>
        output.apply((v) => {
            resolve(v);
            return v;
        }),
    );
    const secret = await pulumi.isSecret(output);
    return { value, secret };
}
