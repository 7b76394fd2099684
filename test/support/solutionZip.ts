import { strToU8, zipSync } from "fflate";
import { LEAD_WRITER_SOLUTION_UNIQUE_NAME, leadWriterRoleDefinition, type SolutionRoleDefinition } from "../emulator/state";

export interface SolutionZipOptions {
    uniqueName: string;
    version: string;
    managed: boolean;
    /**
     * Security roles written to customizations.xml. Default: the Lead Writer role for the Lead Writer solution,
     * none otherwise. `null` leaves <Roles> out entirely (the emulator then falls back to its catalog).
     */
    roles?: SolutionRoleDefinition[] | null;
}

function escapeXml(text: string): string {
    return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&apos;");
}

function solutionXml({ uniqueName, version, managed }: SolutionZipOptions): string {
    const name = escapeXml(uniqueName);
    return `<?xml version="1.0" encoding="utf-8"?>
<ImportExportXml version="9.2.24012.196" SolutionPackageVersion="9.2" languagecode="1033" generatedBy="CrmLive" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <SolutionManifest>
    <UniqueName>${name}</UniqueName>
    <LocalizedNames>
      <LocalizedName description="${name}" languagecode="1033" />
    </LocalizedNames>
    <Descriptions />
    <Version>${escapeXml(version)}</Version>
    <Managed>${managed ? 1 : 0}</Managed>
    <Publisher>
      <UniqueName>emulatorfixtures</UniqueName>
      <LocalizedNames>
        <LocalizedName description="Emulator fixtures" languagecode="1033" />
      </LocalizedNames>
      <CustomizationPrefix>emu</CustomizationPrefix>
      <CustomizationOptionValuePrefix>10000</CustomizationOptionValuePrefix>
    </Publisher>
    <RootComponents />
    <MissingDependencies />
  </SolutionManifest>
</ImportExportXml>
`;
}

function customizationsXml(roles: SolutionRoleDefinition[] | null): string {
    const rolesXml =
        roles === null
            ? ""
            : `  <Roles>
${roles
    .map(
        (role) => `    <Role name="${escapeXml(role.name)}">
      <RolePrivileges>
${role.privileges.map((p) => `        <RolePrivilege name="${escapeXml(p.name)}" level="${p.depth}" />`).join("\n")}
      </RolePrivileges>
    </Role>`,
    )
    .join("\n")}
  </Roles>
`;
    return `<?xml version="1.0" encoding="utf-8"?>
<ImportExportXml xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" OrganizationVersion="9.2.24012.196" OrganizationSchemaType="Standard" CRMServerServiceabilityVersion="9.2.24012.00196">
  <Entities />
${rolesXml}  <Workflows />
  <FieldSecurityProfiles />
  <Templates />
  <EntityMaps />
  <EntityRelationships />
  <OrganizationSettings />
  <optionsets />
  <CustomControls />
  <EntityDataProviders />
  <Languages>
    <Language>1033</Language>
  </Languages>
</ImportExportXml>
`;
}

const CONTENT_TYPES = `<?xml version="1.0" encoding="utf-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/octet-stream" /></Types>`;

/** A managed (or unmanaged) solution package, built in memory, in the layout Dataverse exports. */
export function buildSolutionZip(options: SolutionZipOptions): Buffer {
    const roles =
        options.roles !== undefined
            ? options.roles
            : options.uniqueName === LEAD_WRITER_SOLUTION_UNIQUE_NAME
              ? [leadWriterRoleDefinition()]
              : [];
    const zip = zipSync({
        "solution.xml": strToU8(solutionXml(options)),
        "customizations.xml": strToU8(customizationsXml(roles)),
        "[Content_Types].xml": strToU8(CONTENT_TYPES),
    });
    return Buffer.from(zip);
}
