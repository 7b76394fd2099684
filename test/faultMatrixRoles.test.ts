/**
 * The fault matrix (test/support/faultMatrix.ts) for the RoleAssignment and RolePrivileges providers, and a provider
 * process killed between two calls of a whole stack.
 */
import { faultMatrix } from "./support/faultMatrix";

faultMatrix(["RoleAssignment", "RolePrivileges"], { killedProcess: true });
