import * as pulumi from "@pulumi/pulumi";
import { PrivilegeGrant } from "../guide";
import { runLeadCheck } from "../validation/leadCheck";
import { sharedClient } from "./client";
import { CheckFailure, mustBeGuid, mustBeInstanceUrl, mustNotBeEmpty, validateField, Versioned } from "./common";
import { PROVIDER_VERSION } from "./providerVersion";

/** What the check depends on; a change in any of them runs it again. None is secret. */
export interface LeadValidationTriggers {
    instanceUrl: string;
    tenantId: string;
    applicationId: string;
    /** End date of the current client secret: it changes exactly when a new secret generation becomes current. */
    clientSecretEndDate: string;
    /** The Lead Writer role the application user holds. */
    roleId: string;
    privileges: PrivilegeGrant[];
    solutionVersion: string;
}

export interface LeadValidationInputs extends LeadValidationTriggers, Versioned {
    /** Arrives as a plain value (the dynamic-provider host accepts no secrets); never returned in the outputs. */
    clientSecret: string;
}

export interface LeadValidationOutputs extends LeadValidationTriggers, Versioned {
    /** The application user the test lead was written as. */
    systemUserId: string;
    /** `MSFT_TEST_<ticks>` of the last test lead. */
    testName: string;
    validatedAt: string;
}

const TRIGGERS: readonly (keyof LeadValidationTriggers)[] = [
    "instanceUrl",
    "tenantId",
    "applicationId",
    "clientSecretEndDate",
    "roleId",
    "privileges",
    "solutionVersion",
];

function triggersChanged(olds: Partial<LeadValidationTriggers>, news: LeadValidationTriggers): (keyof LeadValidationTriggers)[] {
    return TRIGGERS.filter((k) => JSON.stringify(olds[k]) !== JSON.stringify(news[k]));
}

/** Runs the same check as `npm run validate`; the test lead is deleted with the deploying identity. */
async function validate(inputs: LeadValidationInputs): Promise<LeadValidationOutputs> {
    const result = await runLeadCheck(
        {
            instanceUrl: inputs.instanceUrl,
            tenantId: inputs.tenantId,
            applicationId: inputs.applicationId,
            clientSecret: inputs.clientSecret,
        },
        { cleanupClient: sharedClient(inputs.instanceUrl), clientOptions: { retry: { maxAttempts: 3, maxElapsedMs: 60_000 } } },
    );
    for (const warning of result.warnings) void pulumi.log.warn(warning);
    // Every input but the secret: a secret returned in the outputs would be stored in plaintext.
    return {
        instanceUrl: inputs.instanceUrl,
        tenantId: inputs.tenantId,
        applicationId: inputs.applicationId,
        clientSecretEndDate: inputs.clientSecretEndDate,
        roleId: inputs.roleId,
        privileges: inputs.privileges,
        solutionVersion: inputs.solutionVersion,
        providerVersion: inputs.providerVersion,
        systemUserId: result.systemUserId,
        testName: result.testName,
        validatedAt: new Date().toISOString(),
    };
}

export const leadValidationProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: LeadValidationInputs, news: LeadValidationInputs) {
        const failures: CheckFailure[] = [];
        validateField(failures, "instanceUrl", news.instanceUrl, mustBeInstanceUrl);
        validateField(failures, "tenantId", news.tenantId, mustBeGuid);
        validateField(failures, "applicationId", news.applicationId, mustBeGuid);
        // The reason names the field only: a secret's value must never reach an error message.
        validateField(failures, "clientSecret", news.clientSecret, mustNotBeEmpty);
        return { inputs: news, failures };
    },

    async diff(_id: string, olds: LeadValidationOutputs, news: LeadValidationInputs) {
        return { changes: triggersChanged(olds, news).length > 0 || olds.providerVersion !== news.providerVersion };
    },

    async create(inputs: LeadValidationInputs) {
        const outs = await validate(inputs);
        return { id: `${outs.applicationId}/${outs.validatedAt}`, outs };
    },

    // A validation is an event, not something that drifts: refresh keeps it.
    async read(id: string, props: LeadValidationOutputs) {
        return { id, props };
    },

    async update(_id: string, olds: LeadValidationOutputs, news: LeadValidationInputs) {
        if (triggersChanged(olds, news).length === 0) {
            // Only a new project version: store the new code without writing another test lead.
            return { outs: { ...olds, providerVersion: news.providerVersion } };
        }
        return { outs: await validate(news) };
    },

    // The test lead was deleted when it was written; nothing is left in Dataverse.
    async delete() {},
};

/** Arguments of {@link LeadValidation}. */
export interface LeadValidationArgs {
    /** The Dynamics 365 instance, `https://<org>.crm<N>.dynamics.com`. */
    readonly instanceUrl: pulumi.Input<string>;
    /** Directory (tenant) id the app signs in to. */
    readonly tenantId: pulumi.Input<string>;
    /** Application (client) id of the lead-writing app. */
    readonly applicationId: pulumi.Input<string>;
    /** The current client secret; always passed on as a secret. */
    readonly clientSecret: pulumi.Input<string>;
    /** End date of that secret, which identifies its generation. */
    readonly clientSecretEndDate: pulumi.Input<string>;
    /** The Lead Writer role assigned to the application user. */
    readonly roleId: pulumi.Input<string>;
    /** The privileges the role was given. */
    readonly privileges: pulumi.Input<PrivilegeGrant[]>;
    /** Version of the Lead Writer solution. */
    readonly solutionVersion: pulumi.Input<string>;
}

/**
 * Partner Center's "Validate" inside `pulumi up` (config `validateOnUp`): writes a test lead as the app once the
 * role and the privileges are in place, and again whenever the app, its current secret, the role, the privileges or
 * the solution change. A failed check fails the update with the same message as `npm run validate`.
 */
export class LeadValidation extends pulumi.dynamic.Resource {
    declare readonly systemUserId: pulumi.Output<string>;
    declare readonly testName: pulumi.Output<string>;
    declare readonly validatedAt: pulumi.Output<string>;

    constructor(name: string, args: LeadValidationArgs, opts?: pulumi.CustomResourceOptions) {
        super(
            leadValidationProvider,
            name,
            {
                systemUserId: undefined,
                testName: undefined,
                validatedAt: undefined,
                ...args,
                clientSecret: pulumi.secret(args.clientSecret),
                providerVersion: PROVIDER_VERSION,
            },
            { ...opts, additionalSecretOutputs: [...(opts?.additionalSecretOutputs ?? []), "clientSecret"] },
            "dataverse",
            "LeadValidation",
        );
    }
}
