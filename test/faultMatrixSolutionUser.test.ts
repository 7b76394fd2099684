/** The fault matrix (test/support/faultMatrix.ts) for the Solution and ApplicationUser providers. */
import { faultMatrix } from "./support/faultMatrix";

faultMatrix(["Solution", "ApplicationUser"]);
