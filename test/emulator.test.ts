/**
 * Pins every contract fact the emulator implements (docs/dataverse-contract.md), with raw HTTP so a
 * drift in the emulator cannot hide behind the project's own client.
 */
import { spawn, type ChildProcess } from "node:child_process";
import net from "node:net";
import path from "node:path";
import axios, { type AxiosInstance, type AxiosResponse } from "axios";
import { strFromU8, unzipSync } from "fflate";
import {
    ADMIN_USER_ID,
    CHILD_BUSINESS_UNIT_ID,
    LEAD_WRITER_ROLE_NAME,
    LEAD_WRITER_SOLUTION_UNIQUE_NAME,
    ORGANIZATION_ID,
    ROOT_BUSINESS_UNIT_ID,
    SYSTEM_ADMINISTRATOR_ROLE_ID,
    SYSTEM_ADMINISTRATOR_ROLE_NAME,
    startEmulator,
    type Emulator,
} from "./emulator/server";
import { buildSolutionZip } from "./support/solutionZip";
import { tsNodeTestEnvironment } from "./support/testRun";

const APP_ID = "11111111-2222-4333-8444-555555555555";
const OTHER_APP_ID = "99999999-8888-4777-8666-555555555555";
const ADMIN_TOKEN = "admin-token";
const APP_TOKEN = "app-token";

interface ODataErrorBody {
    error: { code: string; message: string };
}
interface Collection<T> {
    "@odata.context": string;
    value: T[];
}
type Row = Record<string, unknown>;

let emu: Emulator;

function client(token: string | null = ADMIN_TOKEN): AxiosInstance {
    const headers: Record<string, string> = {
        Accept: "application/json",
        "OData-MaxVersion": "4.0",
        "OData-Version": "4.0",
    };
    if (token !== null) headers.Authorization = `Bearer ${token}`;
    return axios.create({ baseURL: emu.baseUrl, headers, validateStatus: () => true });
}

/** Builds `path?$a=…&$b=…` with %20 for spaces, as OData clients send it. */
function q(path: string, options: Record<string, string>): string {
    const query = Object.entries(options)
        .map(([k, v]) => `${k}=${encodeURIComponent(v)}`)
        .join("&");
    return `${path}?${query}`;
}

function expectError(res: AxiosResponse, status: number, code: string, message?: string | RegExp): void {
    expect({ status: res.status, code: (res.data as ODataErrorBody).error?.code }).toEqual({ status, code });
    if (message !== undefined) expect((res.data as ODataErrorBody).error.message).toMatch(message);
}

async function createAppUser(appId = APP_ID, buId = ROOT_BUSINESS_UNIT_ID): Promise<string> {
    emu.registerApplication(appId);
    const res = await client().post(
        "systemusers",
        { applicationid: appId, accessmode: 4, "businessunitid@odata.bind": `/businessunits(${buId})` },
        { headers: { Prefer: "return=representation" } },
    );
    expect(res.status).toBe(201);
    return (res.data as Row).systemuserid as string;
}

async function roleIn(name: string, buId: string): Promise<Row> {
    const res = await client().get(
        q("roles", {
            $select: "roleid,name,_businessunitid_value,_parentrootroleid_value",
            $filter: `name eq '${name.replace(/'/g, "''")}' and _businessunitid_value eq ${buId}`,
        }),
    );
    expect(res.status).toBe(200);
    const rows = (res.data as Collection<Row>).value;
    expect(rows).toHaveLength(1);
    return rows[0];
}

async function privilegeIds(...names: string[]): Promise<Record<string, string>> {
    const res = await client().get(
        q("privileges", { $select: "privilegeid,name", $filter: names.map((n) => `name eq '${n}'`).join(" or ") }),
    );
    const out: Record<string, string> = {};
    for (const row of (res.data as Collection<Row>).value) out[row.name as string] = row.privilegeid as string;
    return out;
}

async function importSolution(options: {
    uniqueName: string;
    version: string;
    managed: boolean;
}): Promise<{ asyncId: string; jobId: string }> {
    const res = await client().post("ImportSolutionAsync", {
        OverwriteUnmanagedCustomizations: false,
        PublishWorkflows: true,
        CustomizationFile: buildSolutionZip(options).toString("base64"),
    });
    expect(res.status).toBe(200);
    const body = res.data as { AsyncOperationId: string; ImportJobKey: string };
    return { asyncId: body.AsyncOperationId, jobId: body.ImportJobKey };
}

async function pollToEnd(asyncId: string): Promise<Row> {
    for (let i = 0; i < 10; i++) {
        const res = await client().get(
            q(`asyncoperations(${asyncId})`, { $select: "statecode,statuscode,message,friendlymessage,completedon" }),
        );
        expect(res.status).toBe(200);
        if ((res.data as Row).statecode === 3) return res.data as Row;
    }
    throw new Error("import never finished");
}

async function installLeadWriter(version = "1.0.0.0"): Promise<void> {
    const { asyncId } = await importSolution({ uniqueName: LEAD_WRITER_SOLUTION_UNIQUE_NAME, version, managed: true });
    expect((await pollToEnd(asyncId)).statuscode).toBe(30);
}

async function assignRole(userId: string, roleId: string): Promise<AxiosResponse> {
    return client().post(`systemusers(${userId})/systemuserroles_association/$ref`, { "@odata.id": `${emu.baseUrl}roles(${roleId})` });
}

const LEAD = { subject: "MSFT_TEST_638000000000000000", lastname: "MSFT_TEST", firstname: "Test", leadsourcecode: 8 };

beforeEach(async () => {
    emu = await startEmulator({
        tokens: { [ADMIN_TOKEN]: "admin", [APP_TOKEN]: { applicationId: APP_ID } },
        importPolls: 2,
    });
});

afterEach(async () => {
    await emu.close();
});

describe("requests and errors", () => {
    test("a request without a bearer token is 401 with WWW-Authenticate: Bearer", async () => {
        const res = await client(null).get("WhoAmI");
        expectError(res, 401, "0x8005F101", "The requested resource requires authentication.");
        expect(res.headers["www-authenticate"]).toMatch(/^Bearer /);
        const empty = await client("").get("WhoAmI");
        expect(empty.status).toBe(401);
    });

    test("with a token list, an unknown token is 401", async () => {
        expectError(await client("someone-else").get("WhoAmI"), 401, "0x8005F101");
    });

    test("without a token list, any non-empty token is the administrator", async () => {
        await emu.close();
        emu = await startEmulator();
        const res = await client("whatever").get("WhoAmI");
        expect(res.status).toBe(200);
        expect((res.data as Row).UserId).toBe(ADMIN_USER_ID);
    });

    test("WhoAmI answers the caller's business unit, user and organization", async () => {
        const res = await client().get("WhoAmI");
        expect(res.status).toBe(200);
        expect(res.data).toMatchObject({ BusinessUnitId: ROOT_BUSINESS_UNIT_ID, UserId: ADMIN_USER_ID, OrganizationId: ORGANIZATION_ID });
    });

    test("an unknown entity set is 404 0x80060888 naming the segment", async () => {
        expectError(await client().get("accounts"), 404, "0x80060888", "Resource not found for the segment 'accounts'.");
    });

    test("an unknown path segment after a record is 404; an unsupported method is 405", async () => {
        expectError(
            await client().get(`systemusers(${ADMIN_USER_ID})/nosuchnav`),
            404,
            "0x80060888",
            "Resource not found for the segment 'nosuchnav'.",
        );
        expect((await client().patch(`businessunits(${ROOT_BUSINESS_UNIT_ID})`, { name: "x" })).status).toBe(405);
    });

    test("an unknown property in $select or $filter is 400 naming property and type", async () => {
        expectError(
            await client().get(q("systemusers", { $select: "systemuserid,nosuchcolumn" })),
            400,
            "0x80060888",
            "Could not find a property named 'nosuchcolumn' on type 'Microsoft.Dynamics.CRM.systemuser'.",
        );
        expectError(
            await client().get(q("roles", { $filter: "bogus eq 'x'" })),
            400,
            "0x80060888",
            "Could not find a property named 'bogus' on type 'Microsoft.Dynamics.CRM.role'.",
        );
    });

    test("a quoted GUID against a Guid property is rejected (GUIDs are unquoted)", async () => {
        expectError(
            await client().get(q("systemusers", { $filter: `applicationid eq '${APP_ID}'` })),
            400,
            "0x80060888",
            /incompatible types.*'Edm.Guid' and 'Edm.String'/,
        );
    });

    test("string literals double their quotes; and/or/parentheses combine", async () => {
        emu.state.businessUnits.push({
            businessunitid: "aaaaaaaa-0000-4000-8000-000000000001",
            name: "O'Brien",
            parentbusinessunitid: ROOT_BUSINESS_UNIT_ID,
        });
        const res = await client().get(
            q("businessunits", {
                $select: "name",
                $filter: `(name eq 'O''Brien' or name eq 'nobody') and _parentbusinessunitid_value ne null`,
            }),
        );
        expect(res.status).toBe(200);
        expect((res.data as Collection<Row>).value).toEqual([{ businessunitid: "aaaaaaaa-0000-4000-8000-000000000001", name: "O'Brien" }]);
    });

    test("the root business unit is the one row whose parent is null; $select projects plus the key", async () => {
        const res = await client().get(
            q("businessunits", { $select: "businessunitid,name", $filter: "_parentbusinessunitid_value eq null" }),
        );
        expect(res.status).toBe(200);
        const body = res.data as Collection<Row>;
        expect(body["@odata.context"]).toBe(`${emu.baseUrl}$metadata#businessunits(businessunitid,name)`);
        expect(body.value).toHaveLength(1);
        expect(Object.keys(body.value[0]).sort()).toEqual(["businessunitid", "name"]);
        expect(body.value[0].businessunitid).toBe(ROOT_BUSINESS_UNIT_ID);
        const child = await client().get(`businessunits(${CHILD_BUSINESS_UNIT_ID})`);
        expect((child.data as Row)._parentbusinessunitid_value).toBe(ROOT_BUSINESS_UNIT_ID);
    });
});

describe("application users", () => {
    const create = (body: Row, prefer = false): Promise<AxiosResponse> =>
        client().post("systemusers", body, { headers: prefer ? { Prefer: "return=representation" } : {} });
    const appUser = (appId = APP_ID): Row => ({
        applicationid: appId,
        accessmode: 4,
        "businessunitid@odata.bind": `/businessunits(${ROOT_BUSINESS_UNIT_ID})`,
    });

    test("an application unknown to the tenant is AzureApplicationIdNotFound 0x8004F510", async () => {
        expectError(
            await create(appUser()),
            400,
            "0x8004F510",
            new RegExp(`^We didn't find that application ID ${APP_ID} in your Azure Active Directory`),
        );
    });

    test("propagation delay: creates fail until the service principal is visible, then 204 + OData-EntityId", async () => {
        emu.registerApplication(APP_ID, { visibleAfter: 2 });
        expectError(await create(appUser()), 400, "0x8004F510");
        expectError(await create(appUser()), 400, "0x8004F510");
        const res = await create(appUser());
        expect(res.status).toBe(204);
        const id = emu.state.systemUsers.find((u) => u.applicationid === APP_ID)?.systemuserid;
        expect(res.headers["odata-entityid"]).toBe(`${emu.baseUrl}systemusers(${id})`);
    });

    test("Prefer: return=representation answers 201 with the fields Dataverse fills", async () => {
        emu.registerApplication(APP_ID);
        const res = await create(appUser(), true);
        expect(res.status).toBe(201);
        expect(res.data).toMatchObject({
            applicationid: APP_ID,
            accessmode: 4,
            isdisabled: false,
            deletedstate: 0,
            _businessunitid_value: ROOT_BUSINESS_UNIT_ID,
            fullname: `# ${APP_ID.slice(0, 8)}`,
        });
        const found = await client().get(
            q("systemusers", {
                $select: "systemuserid,applicationid,isdisabled,deletedstate,_businessunitid_value",
                $filter: `applicationid eq ${APP_ID}`,
            }),
        );
        expect((found.data as Collection<Row>).value).toEqual([
            {
                systemuserid: (res.data as Row).systemuserid,
                applicationid: APP_ID,
                isdisabled: false,
                deletedstate: 0,
                _businessunitid_value: ROOT_BUSINESS_UNIT_ID,
            },
        ]);
    });

    test("a create without a business unit, with an unknown one, or with isdisabled is 400", async () => {
        emu.registerApplication(APP_ID);
        expectError(await create({ applicationid: APP_ID, accessmode: 4 }), 400, "0x800404a7", "The businessunitid is missing or invalid.");
        expectError(
            await create({ ...appUser(), "businessunitid@odata.bind": "/businessunits(00000000-0000-4000-8000-00000000dead)" }),
            400,
            "0x80040217",
        );
        expect((await create({ ...appUser(), isdisabled: false })).status).toBe(400);
        expect(emu.state.systemUsers).toHaveLength(1);
    });

    test("a second application user for the same app is DuplicateApplicationUser 0x8004F511 (412)", async () => {
        await createAppUser();
        expectError(
            await create(appUser()),
            412,
            "0x8004F511",
            `You are attempting to create an Application ID = ${APP_ID} that already exists.`,
        );
        // One application user per app: another app is unaffected.
        emu.registerApplication(OTHER_APP_ID);
        expect((await create(appUser(OTHER_APP_ID))).status).toBe(204);
    });

    test("delete lifecycle: enabled refused, disable, soft delete (still listed, deletedstate 1), permanent, then 404", async () => {
        const id = await createAppUser();
        expect((await client().delete(`systemusers(${id})`)).status).toBe(400);
        expect((await client().patch(`systemusers(${id})`, { isdisabled: true })).status).toBe(204);
        expect((await client().delete(`systemusers(${id})`)).status).toBe(204);
        const listed = await client().get(q("systemusers", { $select: "deletedstate,isdisabled", $filter: `applicationid eq ${APP_ID}` }));
        expect((listed.data as Collection<Row>).value).toEqual([{ systemuserid: id, deletedstate: 1, isdisabled: true }]);
        // A soft-deleted row still blocks a new application user for the same app.
        expectError(await create(appUser()), 412, "0x8004F511");
        expect((await client().delete(`systemusers(${id})`)).status).toBe(204);
        expectError(await client().delete(`systemusers(${id})`), 404, "0x80040217", `Entity 'systemuser' With Id = ${id} Does Not Exist`);
    });

    test("PATCH with Prefer: return=representation answers 200 and the record", async () => {
        const id = await createAppUser();
        const res = await client().patch(`systemusers(${id})`, { isdisabled: true }, { headers: { Prefer: "return=representation" } });
        expect(res.status).toBe(200);
        expect(res.data).toMatchObject({ systemuserid: id, isdisabled: true });
    });

    test("the permanent delete is refused while the user owns records", async () => {
        const id = await createAppUser();
        emu.state.leads.push({
            leadid: "bbbbbbbb-0000-4000-8000-000000000001",
            subject: "s",
            lastname: "l",
            firstname: null,
            emailaddress1: null,
            companyname: null,
            leadsourcecode: null,
            description: null,
            ownerid: id,
            createdon: "2024-01-01T00:00:00Z",
        });
        await client().patch(`systemusers(${id})`, { isdisabled: true });
        expect((await client().delete(`systemusers(${id})`)).status).toBe(204);
        const res = await client().delete(`systemusers(${id})`);
        expect(res.status).toBe(400);
        // contract: Application user — 0x80048610 "Can't delete a user which owns records".
        expect((res.data as ODataErrorBody).error).toMatchObject({ code: "0x80048610", message: expect.stringMatching(/owns records/) });
        expect(emu.state.systemUsers.some((u) => u.systemuserid === id)).toBe(true);
    });
});

describe("roles", () => {
    test("System Administrator exists once per business unit; the child copy points at the root copy", async () => {
        const root = await roleIn(SYSTEM_ADMINISTRATOR_ROLE_NAME, ROOT_BUSINESS_UNIT_ID);
        const child = await roleIn(SYSTEM_ADMINISTRATOR_ROLE_NAME, CHILD_BUSINESS_UNIT_ID);
        expect(root.roleid).toBe(SYSTEM_ADMINISTRATOR_ROLE_ID);
        expect(child.roleid).not.toBe(root.roleid);
        expect(child._parentrootroleid_value).toBe(root.roleid);
    });

    test("assign (204), read back via $expand, remove by key and by $id (204)", async () => {
        const userId = await createAppUser();
        await installLeadWriter();
        const role = await roleIn(LEAD_WRITER_ROLE_NAME, ROOT_BUSINESS_UNIT_ID);
        expect((await assignRole(userId, role.roleid as string)).status).toBe(204);
        const expandPath = q(`systemusers(${userId})`, {
            $select: "fullname",
            $expand: "systemuserroles_association($select=roleid,name,_businessunitid_value)",
        });
        const read = await client().get(expandPath);
        expect(read.status).toBe(200);
        expect((read.data as Row).systemuserroles_association).toEqual([
            { roleid: role.roleid, name: LEAD_WRITER_ROLE_NAME, _businessunitid_value: ROOT_BUSINESS_UNIT_ID },
        ]);
        expect((await client().delete(`systemusers(${userId})/systemuserroles_association(${role.roleid as string})/$ref`)).status).toBe(
            204,
        );
        expect(((await client().get(expandPath)).data as Row).systemuserroles_association).toEqual([]);
        await assignRole(userId, role.roleid as string);
        const byId = await client().delete(
            q(`systemusers(${userId})/systemuserroles_association/$ref`, { $id: `${emu.baseUrl}roles(${role.roleid as string})` }),
        );
        expect(byId.status).toBe(204);
        expect(emu.state.userRoles.filter((l) => l.systemuserid === userId)).toEqual([]);
    });

    test("a role from another business unit is UserInWrongBusiness 0x80041409", async () => {
        const userId = await createAppUser();
        const child = await roleIn(SYSTEM_ADMINISTRATOR_ROLE_NAME, CHILD_BUSINESS_UNIT_ID);
        expectError(
            await assignRole(userId, child.roleid as string),
            400,
            "0x80041409",
            /^Cannot associate security role because the security role's Business Unit is not the same as the user's Business Unit/,
        );
    });

    test("a repeated assignment is a 204 no-op by default, and an error under the duplicateKeyError quirk", async () => {
        const userId = await createAppUser();
        expect((await assignRole(userId, SYSTEM_ADMINISTRATOR_ROLE_ID)).status).toBe(204);
        expect((await assignRole(userId, SYSTEM_ADMINISTRATOR_ROLE_ID)).status).toBe(204);
        expect(emu.state.userRoles.filter((l) => l.systemuserid === userId)).toHaveLength(1);
        emu.state.quirks.duplicateRoleAssociation = "duplicateKeyError";
        expectError(await assignRole(userId, SYSTEM_ADMINISTRATOR_ROLE_ID), 400, "0x80040237");
    });

    test("assigning an unknown role is 404 ObjectDoesNotExist", async () => {
        const userId = await createAppUser();
        const missing = "00000000-0000-4000-8000-00000000beef";
        expectError(await assignRole(userId, missing), 404, "0x80040217", `Entity 'role' With Id = ${missing} Does Not Exist`);
    });
});

describe("role privileges", () => {
    const add = (roleId: string, privileges: unknown[]): Promise<AxiosResponse> =>
        client().post(`roles(${roleId})/Microsoft.Dynamics.CRM.AddPrivilegesRole`, { Privileges: privileges });
    const retrieve = async (roleId: string): Promise<Row[]> => {
        const res = await client().get(`RetrieveRolePrivilegesRole(RoleId=${roleId})`);
        expect(res.status).toBe(200);
        return (res.data as { RolePrivileges: Row[] }).RolePrivileges;
    };

    test("privileges by name carry their allowed depths (User Entity UI Settings: Basic only)", async () => {
        const res = await client().get(
            q("privileges", {
                $select: "privilegeid,name,canbebasic,canbelocal,canbedeep,canbeglobal",
                $filter: "name eq 'prvReadUserEntityUISettings' or name eq 'prvReadAsyncOperation'",
            }),
        );
        const rows = (res.data as Collection<Row>).value;
        expect(rows).toHaveLength(2);
        const byName = Object.fromEntries(rows.map((r) => [r.name, r]));
        expect(byName.prvReadUserEntityUISettings).toMatchObject({
            canbebasic: true,
            canbelocal: false,
            canbedeep: false,
            canbeglobal: false,
        });
        expect(byName.prvReadAsyncOperation).toMatchObject({ canbebasic: true, canbelocal: true, canbedeep: true, canbeglobal: true });
    });

    test("AddPrivilegesRole with Depth names; RetrieveRolePrivilegesRole answers names, ids and the role's business unit", async () => {
        await installLeadWriter();
        const role = await roleIn(LEAD_WRITER_ROLE_NAME, ROOT_BUSINESS_UNIT_ID);
        const ids = await privilegeIds("prvReadAsyncOperation", "prvReadUserEntityUISettings");
        const res = await add(role.roleid as string, [
            { Depth: "Global", PrivilegeId: ids.prvReadAsyncOperation, BusinessUnitId: ROOT_BUSINESS_UNIT_ID },
            { Depth: "Basic", PrivilegeId: ids.prvReadUserEntityUISettings, BusinessUnitId: ROOT_BUSINESS_UNIT_ID },
        ]);
        expect(res.status).toBe(204);
        const granted = await retrieve(role.roleid as string);
        expect(granted).toEqual(
            expect.arrayContaining([
                expect.objectContaining({
                    Depth: "Global",
                    PrivilegeId: ids.prvReadAsyncOperation,
                    BusinessUnitId: ROOT_BUSINESS_UNIT_ID,
                    PrivilegeName: "prvReadAsyncOperation",
                }),
                expect.objectContaining({
                    Depth: "Basic",
                    PrivilegeId: ids.prvReadUserEntityUISettings,
                    PrivilegeName: "prvReadUserEntityUISettings",
                }),
                expect.objectContaining({ Depth: "Global", PrivilegeName: "prvCreateLead" }),
            ]),
        );
        expect(granted).toHaveLength(6);
    });

    test("a numeric Depth is rejected with 400", async () => {
        const ids = await privilegeIds("prvReadAsyncOperation");
        const res = await add(SYSTEM_ADMINISTRATOR_ROLE_ID, [{ Depth: 3, PrivilegeId: ids.prvReadAsyncOperation }]);
        expect(res.status).toBe(400);
        expect((res.data as ODataErrorBody).error.message).toMatch(/PrivilegeDepth/);
    });

    test("a depth the privilege does not allow is rejected with 400", async () => {
        const ids = await privilegeIds("prvWriteUserEntityUISettings");
        expectError(
            await add(SYSTEM_ADMINISTRATOR_ROLE_ID, [{ Depth: "Global", PrivilegeId: ids.prvWriteUserEntityUISettings }]),
            400,
            "0x800404bb",
        );
    });

    test("adding a privilege already on the role replaces its depth", async () => {
        await installLeadWriter();
        const role = await roleIn(LEAD_WRITER_ROLE_NAME, ROOT_BUSINESS_UNIT_ID);
        const ids = await privilegeIds("prvReadLead");
        expect((await add(role.roleid as string, [{ Depth: "Local", PrivilegeId: ids.prvReadLead }])).status).toBe(204);
        const read = (await retrieve(role.roleid as string)).find((p) => p.PrivilegeName === "prvReadLead");
        expect(read?.Depth).toBe("Local");
    });

    test("roleprivilegescollection reports privilegedepthmask bits 1/2/4/8", async () => {
        await installLeadWriter();
        const role = await roleIn(LEAD_WRITER_ROLE_NAME, ROOT_BUSINESS_UNIT_ID);
        const ids = await privilegeIds("prvReadUserEntityUISettings", "prvReadAsyncOperation", "prvReadLead");
        await add(role.roleid as string, [
            { Depth: "Basic", PrivilegeId: ids.prvReadUserEntityUISettings },
            { Depth: "Deep", PrivilegeId: ids.prvReadAsyncOperation },
            { Depth: "Local", PrivilegeId: ids.prvReadLead },
        ]);
        const res = await client().get(
            q("roleprivilegescollection", { $select: "privilegeid,privilegedepthmask", $filter: `roleid eq ${role.roleid as string}` }),
        );
        expect(res.status).toBe(200);
        const masks = Object.fromEntries((res.data as Collection<Row>).value.map((r) => [r.privilegeid, r.privilegedepthmask]));
        expect(masks[ids.prvReadUserEntityUISettings]).toBe(1);
        expect(masks[ids.prvReadLead]).toBe(2);
        expect(masks[ids.prvReadAsyncOperation]).toBe(4);
        const createLead = (await privilegeIds("prvCreateLead")).prvCreateLead;
        expect(masks[createLead]).toBe(8);
    });

    test("RemovePrivilegeRole removes one; ReplacePrivilegesRole replaces the whole set", async () => {
        await installLeadWriter();
        const roleId = (await roleIn(LEAD_WRITER_ROLE_NAME, ROOT_BUSINESS_UNIT_ID)).roleid as string;
        const ids = await privilegeIds("prvReadLead", "prvReadAsyncOperation");
        const removed = await client().post(`roles(${roleId})/Microsoft.Dynamics.CRM.RemovePrivilegeRole`, {
            Privilege: { "@odata.type": "Microsoft.Dynamics.CRM.privilege", privilegeid: ids.prvReadLead },
        });
        expect(removed.status).toBe(204);
        expect((await retrieve(roleId)).map((p) => p.PrivilegeName)).not.toContain("prvReadLead");
        const replaced = await client().post(`roles(${roleId})/Microsoft.Dynamics.CRM.ReplacePrivilegesRole`, {
            Privileges: [{ Depth: "Global", PrivilegeId: ids.prvReadAsyncOperation }],
        });
        expect(replaced.status).toBe(204);
        expect((await retrieve(roleId)).map((p) => [p.PrivilegeName, p.Depth])).toEqual([["prvReadAsyncOperation", "Global"]]);
    });

    test("privileges of an unknown role are 404 ObjectDoesNotExist", async () => {
        const missing = "00000000-0000-4000-8000-00000000cafe";
        expectError(
            await client().get(`RetrieveRolePrivilegesRole(RoleId=${missing})`),
            404,
            "0x80040217",
            `Entity 'role' With Id = ${missing} Does Not Exist`,
        );
        expectError(await add(missing, []), 404, "0x80040217");
    });
});

describe("solution import", () => {
    test("the fixture zip carries solution.xml, customizations.xml and [Content_Types].xml", () => {
        const files = unzipSync(new Uint8Array(buildSolutionZip({ uniqueName: "Fixture", version: "2.1.0.3", managed: true })));
        expect(Object.keys(files).sort()).toEqual(["[Content_Types].xml", "customizations.xml", "solution.xml"]);
        const manifest = strFromU8(files["solution.xml"]);
        expect(manifest).toMatch(/<ImportExportXml[\s\S]*<SolutionManifest>[\s\S]*<UniqueName>Fixture<\/UniqueName>/);
        expect(manifest).toContain("<Version>2.1.0.3</Version>");
        expect(manifest).toContain("<Managed>1</Managed>");
    });

    test("ImportSolutionAsync runs for importPolls GETs, then succeeds and installs the solution and its role per business unit", async () => {
        const { asyncId, jobId } = await importSolution({
            uniqueName: LEAD_WRITER_SOLUTION_UNIQUE_NAME,
            version: "1.0.0.0",
            managed: true,
        });
        const poll = async (): Promise<Row> =>
            (await client().get(q(`asyncoperations(${asyncId})`, { $select: "statecode,statuscode,message,friendlymessage,completedon" })))
                .data as Row;
        for (let i = 0; i < 2; i++) expect(await poll()).toMatchObject({ statecode: 2, statuscode: 20, completedon: null });
        const done = await poll();
        expect(done).toMatchObject({ statecode: 3, statuscode: 30 });
        expect(typeof done.completedon).toBe("string");
        const result = await client().get(`RetrieveSolutionImportResult(ImportJobId=${jobId})`);
        expect(result.status).toBe(200);
        expect((result.data as { SolutionOperationResult: Row }).SolutionOperationResult.Status).toBe("Passed");
        const solutions = await client().get(
            q("solutions", {
                $select: "solutionid,uniquename,version,ismanaged",
                $filter: `uniquename eq '${LEAD_WRITER_SOLUTION_UNIQUE_NAME}'`,
            }),
        );
        expect((solutions.data as Collection<Row>).value).toEqual([
            expect.objectContaining({ uniquename: LEAD_WRITER_SOLUTION_UNIQUE_NAME, version: "1.0.0.0", ismanaged: true }),
        ]);
        const root = await roleIn(LEAD_WRITER_ROLE_NAME, ROOT_BUSINESS_UNIT_ID);
        const child = await roleIn(LEAD_WRITER_ROLE_NAME, CHILD_BUSINESS_UNIT_ID);
        expect(child._parentrootroleid_value).toBe(root.roleid);
        const grants = (await client().get(`RetrieveRolePrivilegesRole(RoleId=${child.roleid as string})`)).data as {
            RolePrivileges: Row[];
        };
        expect(grants.RolePrivileges.map((p) => `${p.PrivilegeName as string}:${p.Depth as string}`).sort()).toEqual([
            "prvAppendLead:Global",
            "prvCreateLead:Global",
            "prvReadLead:Global",
            "prvWriteLead:Global",
        ]);
    });

    test("the import job and its system job say which solution, who started them and when", async () => {
        const { asyncId, jobId } = await importSolution({
            uniqueName: LEAD_WRITER_SOLUTION_UNIQUE_NAME,
            version: "1.0.0.0",
            managed: true,
        });
        const jobs = await client().get(
            q("importjobs", {
                $select: "importjobid,solutionname,createdon,completedon,progress,_createdby_value",
                $filter: `solutionname eq '${LEAD_WRITER_SOLUTION_UNIQUE_NAME}'`,
            }),
        );
        expect((jobs.data as Collection<Row>).value).toEqual([
            expect.objectContaining({
                importjobid: jobId,
                _createdby_value: ADMIN_USER_ID,
                completedon: null,
                createdon: expect.any(String),
            }),
        ]);
        const queued = await client().get(
            q("asyncoperations", {
                $select: "asyncoperationid,createdon",
                $filter: `operationtype eq 54 and statecode ne 3 and _createdby_value eq ${ADMIN_USER_ID}`,
            }),
        );
        expect((queued.data as Collection<Row>).value.map((r) => r.asyncoperationid)).toEqual([asyncId]);
    });

    test("a second import while one runs is refused with 0x80071151", async () => {
        await importSolution({ uniqueName: LEAD_WRITER_SOLUTION_UNIQUE_NAME, version: "1.0.0.0", managed: true });
        const res = await client().post("ImportSolutionAsync", {
            OverwriteUnmanagedCustomizations: false,
            PublishWorkflows: true,
            CustomizationFile: buildSolutionZip({ uniqueName: "Other", version: "1.0.0.0", managed: true }).toString("base64"),
        });
        expectError(res, 400, "0x80071151");
    });

    test("an unreadable zip is 400", async () => {
        const res = await client().post("ImportSolutionAsync", {
            OverwriteUnmanagedCustomizations: false,
            PublishWorkflows: true,
            CustomizationFile: Buffer.from("not a zip").toString("base64"),
        });
        expectError(res, 400, "0x80048495");
        expect(emu.state.asyncOperations).toHaveLength(0);
    });

    test("a lower version than installed fails the operation (31) and the import result", async () => {
        await installLeadWriter("1.0.0.5");
        const { asyncId, jobId } = await importSolution({
            uniqueName: LEAD_WRITER_SOLUTION_UNIQUE_NAME,
            version: "1.0.0.0",
            managed: true,
        });
        const done = await pollToEnd(asyncId);
        expect(done.statuscode).toBe(31);
        expect(done.message).toMatch(/1\.0\.0\.0[\s\S]*1\.0\.0\.5/);
        const result = await client().get(`RetrieveSolutionImportResult(ImportJobId=${jobId})`);
        expect((result.data as { SolutionOperationResult: Row }).SolutionOperationResult.Status).toBe("Failed");
        expect(emu.state.solutions[0].version).toBe("1.0.0.5");
    });

    test("a managed package over an unmanaged install fails with the mismatch code in the message", async () => {
        const first = await importSolution({ uniqueName: "Mixed", version: "1.0.0.0", managed: false });
        expect((await pollToEnd(first.asyncId)).statuscode).toBe(30);
        const second = await importSolution({ uniqueName: "Mixed", version: "1.1.0.0", managed: true });
        const done = await pollToEnd(second.asyncId);
        expect(done.statuscode).toBe(31);
        expect(done.message).toMatch(/0x8004804[01]/);
    });

    test("re-importing (upgrade) resets the role's privileges to the solution's set", async () => {
        await installLeadWriter("1.0.0.0");
        const role = await roleIn(LEAD_WRITER_ROLE_NAME, ROOT_BUSINESS_UNIT_ID);
        const ids = await privilegeIds("prvReadAsyncOperation");
        await client().post(`roles(${role.roleid as string})/Microsoft.Dynamics.CRM.AddPrivilegesRole`, {
            Privileges: [{ Depth: "Global", PrivilegeId: ids.prvReadAsyncOperation }],
        });
        expect(Object.keys(emu.state.rolePrivileges[role.roleid as string])).toHaveLength(5);
        await installLeadWriter("1.0.0.1");
        const after = await roleIn(LEAD_WRITER_ROLE_NAME, ROOT_BUSINESS_UNIT_ID);
        expect(after.roleid).toBe(role.roleid);
        expect(emu.state.rolePrivileges[role.roleid as string][ids.prvReadAsyncOperation]).toBeUndefined();
        expect(Object.keys(emu.state.rolePrivileges[role.roleid as string])).toHaveLength(4);
    });

    test("DELETE solutions(id) uninstalls: the role copies and their user links go", async () => {
        await installLeadWriter();
        const userId = await createAppUser();
        const role = await roleIn(LEAD_WRITER_ROLE_NAME, ROOT_BUSINESS_UNIT_ID);
        await assignRole(userId, role.roleid as string);
        const solutionId = emu.state.solutions[0].solutionid;
        expect((await client().delete(`solutions(${solutionId})`)).status).toBe(204);
        const roles = await client().get(q("roles", { $select: "roleid", $filter: `name eq '${LEAD_WRITER_ROLE_NAME}'` }));
        expect((roles.data as Collection<Row>).value).toEqual([]);
        expect(emu.state.userRoles.some((l) => l.systemuserid === userId)).toBe(false);
        expectError(await client().delete(`solutions(${solutionId})`), 404, "0x80040217");
    });

    test("StageSolution reports the package's name, version and managed flag", async () => {
        const res = await client().post("StageSolution", {
            CustomizationFile: buildSolutionZip({
                uniqueName: LEAD_WRITER_SOLUTION_UNIQUE_NAME,
                version: "1.0.0.0",
                managed: true,
            }).toString("base64"),
        });
        expect(res.status).toBe(200);
        expect((res.data as { StageSolutionResults: Row }).StageSolutionResults).toMatchObject({
            StageSolutionStatus: "Passed",
            MissingDependencies: [],
            SolutionDetails: { SolutionUniqueName: LEAD_WRITER_SOLUTION_UNIQUE_NAME, SolutionVersion: "1.0.0.0", IsManaged: true },
        });
    });

    test("running work moves on with every request, polled or not, as time passes for the real service", async () => {
        const { asyncId } = await importSolution({ uniqueName: LEAD_WRITER_SOLUTION_UNIQUE_NAME, version: "1.0.0.0", managed: true });
        await client().get("WhoAmI");
        await client().get("WhoAmI");
        const solutions = await client().get(
            q("solutions", { $select: "uniquename,version", $filter: `uniquename eq '${LEAD_WRITER_SOLUTION_UNIQUE_NAME}'` }),
        );
        expect((solutions.data as Collection<Row>).value).toEqual([
            expect.objectContaining({ uniquename: LEAD_WRITER_SOLUTION_UNIQUE_NAME, version: "1.0.0.0" }),
        ]);
        expect((await client().get(`asyncoperations(${asyncId})`)).data).toMatchObject({ statecode: 3, statuscode: 30 });
    });

    test("importPolls 0 completes the operation on its first GET", async () => {
        await emu.close();
        emu = await startEmulator({ importPolls: 0 });
        const { asyncId } = await importSolution({ uniqueName: "Quick", version: "1.0.0.0", managed: true });
        const first = await client().get(`asyncoperations(${asyncId})`);
        expect(first.data).toMatchObject({ statecode: 3, statuscode: 30 });
    });

    test("UninstallSolutionAsync removes the solution when its operation completes", async () => {
        await installLeadWriter();
        const res = await client().post("UninstallSolutionAsync", { SolutionUniqueName: LEAD_WRITER_SOLUTION_UNIQUE_NAME });
        expect(res.status).toBe(200);
        const done = await pollToEnd((res.data as Row).AsyncOperationId as string);
        expect(done.statuscode).toBe(30);
        expect(emu.state.solutions).toEqual([]);
    });
});

describe("leads", () => {
    async function appWithLeadWriter(): Promise<string> {
        const userId = await createAppUser();
        await installLeadWriter();
        await assignRole(userId, (await roleIn(LEAD_WRITER_ROLE_NAME, ROOT_BUSINESS_UNIT_ID)).roleid as string);
        return userId;
    }

    test("the administrator creates a lead (204 + OData-EntityId) owned by itself, and reads it back", async () => {
        const res = await client().post("leads", LEAD);
        expect(res.status).toBe(204);
        const match = /leads\(([0-9a-f-]{36})\)$/.exec(res.headers["odata-entityid"] as string);
        expect(match).not.toBeNull();
        const read = await client().get(q(`leads(${match?.[1] ?? ""})`, { $select: "subject,lastname,_ownerid_value,leadsourcecode" }));
        expect(read.status).toBe(200);
        expect(read.data).toMatchObject({
            leadid: match?.[1],
            subject: LEAD.subject,
            lastname: LEAD.lastname,
            leadsourcecode: 8,
            _ownerid_value: ADMIN_USER_ID,
        });
    });

    test("lead validation: required subject/lastname, lengths 300/50, unknown properties, integer leadsourcecode", async () => {
        expect((await client().post("leads", { subject: "s" })).status).toBe(400);
        expect((await client().post("leads", { lastname: "l" })).status).toBe(400);
        expect((await client().post("leads", { ...LEAD, subject: "x".repeat(300) })).status).toBe(204);
        expect((await client().post("leads", { ...LEAD, subject: "x".repeat(301) })).status).toBe(400);
        expect((await client().post("leads", { ...LEAD, lastname: "x".repeat(51) })).status).toBe(400);
        expect((await client().post("leads", { ...LEAD, firstname: "x".repeat(51) })).status).toBe(400);
        expectError(await client().post("leads", { ...LEAD, telephone9: "1" }), 400, "0x80060888", /telephone9/);
        expect((await client().post("leads", { ...LEAD, leadsourcecode: "8" })).status).toBe(400);
        expect(emu.state.leads).toHaveLength(1);
    });

    test("an application user with no role is UserNotAssignedRoles 0x80042f09", async () => {
        await createAppUser();
        expectError(
            await client(APP_TOKEN).post("leads", LEAD),
            403,
            "0x80042f09",
            /^SecLib::RetrievePrivilegeForUser failed - no roles are assigned to user/,
        );
    });

    test("an application user with the Lead Writer role creates leads it owns, but cannot delete them", async () => {
        const userId = await appWithLeadWriter();
        const res = await client(APP_TOKEN).post("leads", LEAD, { headers: { Prefer: "return=representation" } });
        expect(res.status).toBe(201);
        const lead = res.data as Row;
        expect(lead._ownerid_value).toBe(userId);
        expectError(await client(APP_TOKEN).delete(`leads(${lead.leadid as string})`), 403, "0x80040231", /prvDeleteLead/);
        expect((await client().delete(`leads(${lead.leadid as string})`)).status).toBe(204);
        expect(emu.state.leads).toEqual([]);
    });

    test("a role without prvCreateLead is PrincipalPrivilegeDenied 0x80040231", async () => {
        const userId = await appWithLeadWriter();
        const roleId = emu.state.userRoles.find((l) => l.systemuserid === userId)?.roleid ?? "";
        const ids = await privilegeIds("prvCreateLead");
        await client().post(`roles(${roleId})/Microsoft.Dynamics.CRM.RemovePrivilegeRole`, {
            Privilege: { "@odata.type": "Microsoft.Dynamics.CRM.privilege", privilegeid: ids.prvCreateLead },
        });
        expectError(await client(APP_TOKEN).post("leads", LEAD), 403, "0x80040231", /missing prvCreateLead privilege/);
    });

    test("a disabled application user is refused (403), and an app without an application user is not a member", async () => {
        expectError(await client(APP_TOKEN).get("WhoAmI"), 403, "0x80072560", "The user is not a member of the organization.");
        const userId = await appWithLeadWriter();
        const who = await client(APP_TOKEN).get("WhoAmI");
        expect(who.data).toMatchObject({ UserId: userId, BusinessUnitId: ROOT_BUSINESS_UNIT_ID });
        await client().patch(`systemusers(${userId})`, { isdisabled: true });
        expectError(await client(APP_TOKEN).post("leads", LEAD), 403, "0x80040225", /is disabled/);
    });

    test("read depth scopes records: at Basic the app user sees only its own leads", async () => {
        const userId = await appWithLeadWriter();
        const roleId = emu.state.userRoles.find((l) => l.systemuserid === userId)?.roleid ?? "";
        const ids = await privilegeIds("prvReadLead");
        await client().post(`roles(${roleId})/Microsoft.Dynamics.CRM.AddPrivilegesRole`, {
            Privileges: [{ Depth: "Basic", PrivilegeId: ids.prvReadLead }],
        });
        const adminLead = /\(([0-9a-f-]{36})\)$/.exec((await client().post("leads", LEAD)).headers["odata-entityid"] as string)?.[1] ?? "";
        await client(APP_TOKEN).post("leads", { ...LEAD, subject: "mine" });
        const listed = await client(APP_TOKEN).get(q("leads", { $select: "subject" }));
        expect((listed.data as Collection<Row>).value.map((r) => r.subject)).toEqual(["mine"]);
        expectError(await client(APP_TOKEN).get(`leads(${adminLead})`), 403, "0x80048306", /ReadAccess/);
    });

    test("an unknown lead is 404 ObjectDoesNotExist; a filtered query finds leads by value", async () => {
        const missing = "00000000-0000-4000-8000-00000000f00d";
        expectError(await client().get(`leads(${missing})`), 404, "0x80040217", `Entity 'lead' With Id = ${missing} Does Not Exist`);
        await client().post("leads", LEAD);
        await client().post("leads", { ...LEAD, subject: "other" });
        const res = await client().get(
            q("leads", { $select: "subject", $filter: `subject eq '${LEAD.subject}' and _ownerid_value eq ${ADMIN_USER_ID}` }),
        );
        expect((res.data as Collection<Row>).value.map((r) => r.subject)).toEqual([LEAD.subject]);
    });
});

describe("faults and the request log", () => {
    test("a status fault on the Nth match answers that status with Retry-After, then requests pass", async () => {
        emu.injectFault({ method: "GET", path: /WhoAmI/ }, 2, { kind: "status", status: 429, retryAfter: "1" });
        expect((await client().get("WhoAmI")).status).toBe(200);
        const throttled = await client().get("WhoAmI");
        expectError(throttled, 429, "0x80072322");
        expect(throttled.headers["retry-after"]).toBe("1");
        expect((await client().get("WhoAmI")).status).toBe(200);
    });

    test("faults on listed Ns and on every match; method must match; clearFaults removes them", async () => {
        emu.injectFault({ path: /businessunits/ }, [1, 3], { kind: "status", status: 503 });
        const statuses: number[] = [];
        for (let i = 0; i < 3; i++) statuses.push((await client().get("businessunits")).status);
        expect(statuses).toEqual([503, 200, 503]);
        const date = "Wed, 21 Oct 2037 07:28:00 GMT";
        emu.injectFault({ method: "POST", path: /leads/ }, "every", {
            kind: "status",
            status: 429,
            retryAfter: date,
            code: "0x80072321",
            message: "time",
        });
        expect((await client().get("leads")).status).toBe(200);
        const res = await client().post("leads", LEAD);
        expectError(res, 429, "0x80072321", "time");
        expect(res.headers["retry-after"]).toBe(date);
        expect((await client().post("leads", LEAD)).status).toBe(429);
        emu.clearFaults();
        expect((await client().post("leads", LEAD)).status).toBe(204);
    });

    test("a reset destroys the socket; a delay answers late but normally", async () => {
        emu.injectFault({ path: /WhoAmI/ }, 1, { kind: "reset" });
        await expect(client().get("WhoAmI")).rejects.toMatchObject({
            code: expect.stringMatching(/ECONNRESET|ERR_BAD_RESPONSE|ECONNREFUSED|EPIPE/),
        });
        emu.injectFault({ path: /WhoAmI/ }, "every", { kind: "delay", ms: 150 });
        const started = Date.now();
        const res = await client().get("WhoAmI");
        expect(res.status).toBe(200);
        expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    });

    test("timeout holds the request unanswered and never carries it out", async () => {
        emu.injectFault({ method: "POST", path: /leads$/ }, 1, { kind: "timeout", ms: 5_000 });
        const started = Date.now();
        await expect(client().post("leads", LEAD, { timeout: 200 })).rejects.toMatchObject({ code: "ECONNABORTED" });
        expect(Date.now() - started).toBeLessThan(2_000);
        expect(emu.state.leads).toEqual([]);
    });

    test("resetAfter carries the request out and then drops the answer", async () => {
        emu.injectFault({ method: "POST", path: /leads$/ }, 1, { kind: "resetAfter" });
        await expect(client().post("leads", LEAD)).rejects.toMatchObject({
            code: expect.stringMatching(/ECONNRESET|ERR_BAD_RESPONSE|EPIPE/),
        });
        expect(emu.state.leads.map((l) => l.subject)).toEqual([LEAD.subject]);
    });

    test("hold carries the request out only once released; waitForRequest and whenIdle follow it without a clock", async () => {
        let release = (): void => undefined;
        const held = new Promise<void>((resolve) => (release = resolve));
        const createLead = { method: "POST", path: /leads$/ };
        emu.injectFault(createLead, 1, { kind: "hold", until: held });
        const answer = client().post("leads", LEAD);

        const logged = await emu.waitForRequest(createLead);
        expect(logged).toMatchObject({ method: "POST", path: "/api/data/v9.2/leads" });
        expect(emu.state.leads).toEqual([]);
        let idle = false;
        const whenIdle = emu.whenIdle().then(() => (idle = true));
        await client().get("WhoAmI");
        expect(idle).toBe(false);

        release();
        await whenIdle;
        expect(emu.state.leads.map((l) => l.subject)).toEqual([LEAD.subject]);
        expect((await answer).status).toBe(204);
    });

    test("every request is logged with decoded path + query, body, status, time and principal", async () => {
        emu.injectFault({ path: /faulted/ }, 1, { kind: "status", status: 503 });
        await client().get(q("systemusers", { $filter: `applicationid eq ${APP_ID}` }));
        await client().post("leads", LEAD);
        await client().get("faulted");
        await client(null).get("WhoAmI");
        expect(emu.requests.map((r) => [r.method, r.path, r.status, r.principal])).toEqual([
            ["GET", `/api/data/v9.2/systemusers?$filter=applicationid eq ${APP_ID}`, 200, ADMIN_USER_ID],
            ["POST", "/api/data/v9.2/leads", 204, ADMIN_USER_ID],
            ["GET", "/api/data/v9.2/faulted", 503, ADMIN_USER_ID],
            ["GET", "/api/data/v9.2/WhoAmI", 401, undefined],
        ]);
        expect(emu.requests[1].body).toEqual(LEAD);
        expect(Math.abs(emu.requests[0].time - Date.now())).toBeLessThan(10_000);
    });
});

describe("npm run emulator", () => {
    const ROOT = path.join(__dirname, "..");
    /** `npm run emulator` as a developer starts it; the output is collected and the exit awaited as events. */
    function runEmulatorScript(port: number): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
        const child = spawn("npm", ["run", "--silent", "emulator"], {
            cwd: ROOT,
            env: { ...process.env, ...tsNodeTestEnvironment(), PORT: String(port) },
            stdio: ["ignore", "pipe", "pipe"],
        });
        let output = "";
        child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
        child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
        const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
        return { child, output: () => output, exited };
    }

    function connects(port: number): Promise<boolean> {
        return new Promise((resolve) => {
            const socket = net.connect(port, "127.0.0.1");
            socket.once("connect", () => {
                socket.destroy();
                resolve(true);
            });
            socket.once("error", () => resolve(false));
        });
    }

    test("stops listening when npm gets SIGTERM", async () => {
        const run = runEmulatorScript(0);
        const baseUrl = await new Promise<string>((resolve, reject) => {
            run.child.stdout?.on("data", () => {
                const match = /http:\/\/127\.0\.0\.1:\d+\/api\/data\/v9\.2\//.exec(run.output());
                if (match) resolve(match[0]);
            });
            void run.exited.then(() => reject(new Error(`the emulator exited before listening: ${run.output()}`)));
        });
        const port = Number(new URL(baseUrl).port);
        // A connection held open closes when the emulator process goes: that is the event to wait for.
        const held = net.connect(port, "127.0.0.1");
        await new Promise((resolve) => held.once("connect", resolve));
        const closed = new Promise((resolve) => held.once("close", resolve));
        try {
            run.child.kill("SIGTERM");
            await run.exited;
            await closed;
            expect(await connects(port)).toBe(false);
        } finally {
            held.destroy();
        }
    }, 30_000);

    test("says clearly that its port is taken, without a stack, and exits 1", async () => {
        const squatter = net.createServer();
        await new Promise<void>((resolve) => squatter.listen(0, "127.0.0.1", resolve));
        const port = (squatter.address() as net.AddressInfo).port;
        try {
            const run = runEmulatorScript(port);
            expect(await run.exited).toBe(1);
            expect(run.output()).toContain(`The emulator cannot listen on 127.0.0.1:${port}: the port is taken.`);
            expect(run.output()).not.toMatch(/EADDRINUSE|\n\s+at /);
        } finally {
            await new Promise((resolve) => squatter.close(resolve));
        }
    }, 30_000);
});

describe("timing options (for the benchmark)", () => {
    test("latencyMs delays every answer by that round trip and logs when the answer left", async () => {
        await emu.close();
        emu = await startEmulator({ latencyMs: 200 });
        const started = Date.now();
        const res = await client("any").get("WhoAmI");
        expect(res.status).toBe(200);
        expect(Date.now() - started).toBeGreaterThanOrEqual(195);
        const [entry] = emu.requests;
        expect(entry.answered! - entry.time).toBeGreaterThanOrEqual(195);
    });

    test("importDurationMs finishes a job by the clock, however often it is polled, and dates it at its due time", async () => {
        await emu.close();
        emu = await startEmulator({ importDurationMs: 600 });
        const started = Date.now();
        const { asyncId } = await importSolution({ uniqueName: "Timed", version: "1.0.0.0", managed: true });
        const poll = async () => (await client().get(`asyncoperations(${asyncId})`)).data as Row;
        for (let i = 0; i < 5; i++) expect(await poll()).toMatchObject({ statecode: 2, statuscode: 20 });
        const dueAt = emu.state.asyncOperations[0].dueAt!;
        expect(dueAt - started).toBeGreaterThanOrEqual(600);
        await new Promise((r) => setTimeout(r, dueAt - Date.now() + 50));
        const done = await poll();
        expect(done).toMatchObject({ statecode: 3, statuscode: 30 });
        expect(Date.parse(done.completedon as string)).toBe(Math.floor(dueAt / 1000) * 1000);
    });
});
