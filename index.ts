import { loadStackConfig } from "./components/config";
import { LeadManagement } from "./components/leadManagement";

const config = loadStackConfig();
const leads = new LeadManagement("lead-management", { config });

// The stack outputs are the fields of Partner Center's "Connection details" form (Dynamics 365 Customer Engagement)
// for the configured sign-in method, and only those, plus what needs your attention: the notices that apply and
// `warnings` (see README "Warnings"), an empty list when nothing does.
export = { ...leads.connectionDetails, ...leads.notices, warnings: leads.warnings };
