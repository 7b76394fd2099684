import { loadStackConfig } from "./components/config";
import { LeadManagement } from "./components/leadManagement";

const config = loadStackConfig();
const leads = new LeadManagement("lead-management", { config });

// The fields of Partner Center's "Connection details" form (Dynamics 365 Customer Engagement).
export const leadDestination = leads.leadDestination;
export const instanceUrl = leads.instanceUrl;
export const authenticationMethod = leads.authenticationMethod;
export const applicationId = leads.applicationId;
export const directoryId = leads.directoryId;
export const clientSecret = leads.clientSecret;
export const clientSecretEndDate = leads.clientSecretEndDate;
export const contactEmails = leads.contactEmails;
// Not a form field: what needs your attention (see README "Warnings"); an empty list when nothing does.
export const warnings = leads.warnings;
