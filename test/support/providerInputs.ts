/** The inputs the program gives each Dataverse provider (components/leadManagement.ts), as the provider tests send them. */
import { GUIDE_ROLE_PRIVILEGES, PrivilegeGrant } from "../../components/guide";
import { LEAD_WRITER_ROLE_NAME } from "../emulator/server";

export const INSTANCE = "https://contoso.crm.dynamics.com";
export const APP_ID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
/** The version of the provider code, which every Dataverse resource carries as an input. */
export const PROVIDER_VERSION = { providerVersion: "1.0.0" };

/** Provider hosts' setting for a short first wait for changes to reach Dataverse (DATAVERSE_PROPAGATION_DELAY_MS). */
export const PROPAGATION = { DATAVERSE_PROPAGATION_DELAY_MS: "10" };

export const solutionInputs = (source: string, extra: Record<string, unknown> = {}) => ({
    ...PROVIDER_VERSION,
    instanceUrl: INSTANCE,
    source,
    importTimeoutMinutes: 1,
    retainOnDelete: false,
    ...extra,
});

export const userInputs = (applicationId = APP_ID, businessUnitId = "") => ({
    ...PROVIDER_VERSION,
    instanceUrl: INSTANCE,
    applicationId,
    businessUnitId,
});

export const linkInputs = (systemUserId: string) => ({
    ...PROVIDER_VERSION,
    instanceUrl: INSTANCE,
    systemUserId,
    roleName: LEAD_WRITER_ROLE_NAME,
});

export const grantInputs = (privileges: readonly PrivilegeGrant[] = GUIDE_ROLE_PRIVILEGES, solutionVersion: unknown = "1.0.0.0") => ({
    ...PROVIDER_VERSION,
    instanceUrl: INSTANCE,
    roleName: LEAD_WRITER_ROLE_NAME,
    privileges: [...privileges],
    solutionVersion,
});
