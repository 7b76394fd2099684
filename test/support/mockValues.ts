/**
 * The values the mocked tenant and providers answer with (see pulumiMocks.ts), in a module that does not load Pulumi,
 * so tests that only compare against them stay light.
 */
export const MOCK_TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47";
export const DYNAMICS_CRM_APP_ID = "00000007-0000-0000-c000-000000000000";
export const DYNAMICS_CRM_SP_OBJECT_ID = "5a0e2b8c-0000-4000-8000-00000000c0de";
export const USER_IMPERSONATION_SCOPE_ID = "78ce3f0f-a1ce-49c2-8cde-64b5c0896db4";
/** What a mock run reports for an output a preview does not know yet (see mockProgram.ts). */
export const UNKNOWN_OUTPUT = "<unknown until up>";
export const MOCK_SECRET_VALUE = "mock-generated-secret-not-real";
export const MOCK_SYSTEM_USER_ID = "0d3c5a2e-1b4f-4e6a-9c8d-7f6e5d4c3b2a";
export const MOCK_PASSWORD = "mock-generated-password-not-real";
export const MOCK_USER_OBJECT_ID = "8c1d3e5f-2a4b-4c6d-8e0f-1a2b3c4d5e6f";
export const MOCK_SKU_ID = "1e1a282c-9c54-43a2-9310-98ef728faace";
/** The key Pulumi marks a secret value with in serialized properties. */
export const SECRET_SIG = "4dabf18193072939515e22adb298388d";
export const MOCK_ROLE_ID = "9a1e7c44-5b2d-4f3a-8e6c-1d0b2a3c4e5f";
