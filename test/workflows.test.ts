/**
 * The CI rules of README "CI", checked on the workflow files themselves so that a later edit cannot quietly undo
 * them: previews with a read-only identity, `up` only from main in the `production` environment, no stored secret,
 * per-job permissions, pinned actions and CLI, one concurrency group per stack, the weekly rotation and validation,
 * and a notice instead of a failure when a fork or a fresh repository lacks what a job needs.
 *
 * Each rule is a function from the parsed workflows to the list of its violations; the last block runs each rule on
 * a copy broken on purpose, to show that it can fail.
 */
import * as fs from "fs";
import * as path from "path";
import { parse } from "yaml";

const WORKFLOW_DIR = path.join(__dirname, "..", ".github", "workflows");

interface Step {
    name?: string;
    id?: string;
    uses?: string;
    run?: string;
    if?: string;
    with?: Record<string, unknown>;
    env?: Record<string, unknown>;
}
interface Job {
    needs?: string | string[];
    if?: string;
    environment?: string | { name: string };
    permissions?: Record<string, string> | string;
    concurrency?: { group: string; "cancel-in-progress"?: boolean } | string;
    env?: Record<string, unknown>;
    steps?: Step[];
}
interface Workflow {
    file: string;
    /** The file as written, for what parsing drops (comments after `uses:`). */
    text: string;
    on: Record<string, unknown>;
    permissions?: unknown;
    env?: Record<string, unknown>;
    jobs: Record<string, Job>;
}

function load(file: string, text: string): Workflow {
    const parsed = parse(text) as Omit<Workflow, "file" | "text"> & { on: unknown };
    const on =
        typeof parsed.on === "string"
            ? { [parsed.on]: null }
            : Array.isArray(parsed.on)
              ? Object.fromEntries(parsed.on.map((t) => [t, null]))
              : parsed.on;
    return { ...parsed, on: on as Record<string, unknown>, file, text };
}

function loadAll(): Workflow[] {
    return fs
        .readdirSync(WORKFLOW_DIR)
        .filter((f) => /\.ya?ml$/.test(f))
        .sort()
        .map((f) => load(f, fs.readFileSync(path.join(WORKFLOW_DIR, f), "utf8")));
}

const PULUMI_ACTION = /^pulumi\/actions@/;
const AZURE_LOGIN = /^azure\/login@/;
const FORBIDDEN_ENV = [
    "PULUMI_CONFIG_PASSPHRASE",
    "PULUMI_CONFIG_PASSPHRASE_FILE",
    "PULUMI_ACCESS_TOKEN",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_CLIENT_SECRET",
    "ARM_CLIENT_SECRET",
    "ARM_CLIENT_CERTIFICATE_PASSWORD",
];

const steps = (job: Job): Step[] => job.steps ?? [];
const jobsOf = (wf: Workflow) => Object.entries(wf.jobs);
const pulumiCommand = (job: Job): string | undefined => {
    const step = steps(job).find((s) => PULUMI_ACTION.test(s.uses ?? ""));
    return step ? String(step.with?.command ?? "") : undefined;
};
/**
 * A job may change the stack: the action with any command but a literal `preview` (an expression counts), or a
 * hand-written `pulumi up`/`refresh`/`destroy`/`import`/`state`. All such jobs are held to the rules of `up`.
 */
const runsUp = (job: Job) => {
    const command = pulumiCommand(job);
    return (
        (command !== undefined && command !== "preview") ||
        steps(job).some((s) => /\bpulumi\s+(up|refresh|destroy|import|state)\b/.test(s.run ?? ""))
    );
};
const runsPreview = (job: Job) => pulumiCommand(job) === "preview";
const signsIn = (job: Job) => steps(job).some((s) => AZURE_LOGIN.test(s.uses ?? "") || PULUMI_ACTION.test(s.uses ?? ""));
const needsOf = (job: Job) => (job.needs === undefined ? [] : Array.isArray(job.needs) ? job.needs : [job.needs]);
const environmentOf = (job: Job) => (typeof job.environment === "string" ? job.environment : job.environment?.name);
const concurrencyOf = (job: Job) => (typeof job.concurrency === "string" ? { group: job.concurrency } : job.concurrency);
/** Names of the `vars.X` a job reads without a default (`vars.X || 'default'` has one). */
const requiredVars = (job: Job): string[] => {
    const text = JSON.stringify(job);
    const all = [...text.matchAll(/vars\.([A-Z0-9_]+)(\s*\|\|)?/g)];
    return [...new Set(all.filter((m) => !m[2]).map((m) => m[1]))].sort();
};
/** The gate a job depends on: a job among its needs that emits `::notice` and sets a `ready` output. */
const gateOf = (wf: Workflow, job: Job): Job | undefined =>
    needsOf(job)
        .map((name) => wf.jobs[name])
        .find((j) => j && steps(j).some((s) => /::notice/.test(s.run ?? "") && /ready=/.test(s.run ?? "")));

type Rule = (workflows: Workflow[]) => string[];

const rules: Record<string, Rule> = {
    "every action is pinned to a full commit SHA with its version in a comment": (wfs) =>
        wfs.flatMap((wf) => {
            const problems: string[] = [];
            for (const [name, job] of jobsOf(wf)) {
                for (const step of steps(job)) {
                    if (step.uses && !step.uses.startsWith("./") && !/^[\w.-]+\/[\w./-]+@[0-9a-f]{40}$/.test(step.uses)) {
                        problems.push(`${wf.file} ${name}: ${step.uses} is not pinned to a commit SHA`);
                    }
                }
            }
            for (const line of wf.text.split("\n").filter((l) => /^\s*(-\s+)?uses:/.test(l))) {
                if (!/uses:\s*\S+@[0-9a-f]{40}\s+#\s*v\d+(\.\d+)*\s*$/.test(line)) {
                    problems.push(`${wf.file}: "${line.trim()}" lacks a "# vX.Y.Z" comment`);
                }
            }
            return problems;
        }),

    "the Pulumi CLI version is pinned": (wfs) =>
        wfs.flatMap((wf) =>
            jobsOf(wf).flatMap(([name, job]) =>
                steps(job)
                    .filter((s) => PULUMI_ACTION.test(s.uses ?? ""))
                    .filter((s) => !/^\d+\.\d+\.\d+$/.test(String(s.with?.["pulumi-version"] ?? "")))
                    .map(() => `${wf.file} ${name}: pulumi/actions without an exact pulumi-version`),
            ),
        ),

    "no job holds a stored secret": (wfs) =>
        wfs.flatMap((wf) => {
            const problems: string[] = [];
            if (/\$\{\{[^}]*\bsecrets\./.test(wf.text)) problems.push(`${wf.file}: reads a repository secret`);
            for (const name of FORBIDDEN_ENV) {
                if (new RegExp(`\\b${name}\\b`).test(wf.text)) problems.push(`${wf.file}: mentions ${name}`);
            }
            return problems;
        }),

    "previews run only on pull_request, with the preview identity": (wfs) =>
        wfs.flatMap((wf) =>
            jobsOf(wf)
                .filter(([, job]) => runsPreview(job))
                .flatMap(([name, job]) => {
                    const problems: string[] = [];
                    if (Object.keys(wf.on).join() !== "pull_request")
                        problems.push(`${wf.file}: a preview triggered by ${Object.keys(wf.on)}`);
                    if (environmentOf(job)) problems.push(`${wf.file} ${name}: a preview in environment ${environmentOf(job)}`);
                    const ids = JSON.stringify(job);
                    if (!/vars\.AZURE_PREVIEW_CLIENT_ID/.test(ids))
                        problems.push(`${wf.file} ${name}: not signed in as AZURE_PREVIEW_CLIENT_ID`);
                    if (/AZURE_DEPLOY_CLIENT_ID/.test(wf.text))
                        problems.push(`${wf.file}: the pull request workflow names the deploy identity`);
                    return problems;
                }),
        ),

    "up runs only on push to main or the schedule, in the production environment, with the deploy identity": (wfs) =>
        wfs.flatMap((wf) => {
            const problems: string[] = [];
            if ("pull_request_target" in wf.on || "workflow_run" in wf.on)
                problems.push(`${wf.file}: a trigger that runs with base-repository rights`);
            for (const [name, job] of jobsOf(wf).filter(([, j]) => runsUp(j))) {
                const triggers = Object.keys(wf.on).sort();
                if (triggers.some((t) => t !== "push" && t !== "schedule")) problems.push(`${wf.file}: up triggered by ${triggers}`);
                const push = wf.on.push as { branches?: string[] } | null | undefined;
                if ("push" in wf.on && JSON.stringify(push?.branches) !== JSON.stringify(["main"])) {
                    problems.push(`${wf.file}: up on pushes to ${JSON.stringify(push?.branches ?? "every branch")}`);
                }
                if (!/github\.ref == 'refs\/heads\/main'/.test(job.if ?? ""))
                    problems.push(`${wf.file} ${name}: up not limited to refs/heads/main`);
                if (environmentOf(job) !== "production") problems.push(`${wf.file} ${name}: up outside the production environment`);
                const identity = JSON.stringify(job);
                if (!/vars\.AZURE_DEPLOY_CLIENT_ID/.test(identity) || /AZURE_PREVIEW_CLIENT_ID/.test(identity)) {
                    problems.push(`${wf.file} ${name}: up not signed in as AZURE_DEPLOY_CLIENT_ID alone`);
                }
            }
            return problems;
        }),

    "permissions are set per job, id-token: write only where a job signs in": (wfs) =>
        wfs.flatMap((wf) => {
            const problems: string[] = [];
            if (JSON.stringify(wf.permissions) !== "{}") problems.push(`${wf.file}: workflow-level permissions must be {}`);
            for (const [name, job] of jobsOf(wf)) {
                if (typeof job.permissions !== "object" || job.permissions === null) {
                    problems.push(`${wf.file} ${name}: no permissions block of its own`);
                    continue;
                }
                const idToken = job.permissions["id-token"] === "write";
                if (idToken !== signsIn(job))
                    problems.push(`${wf.file} ${name}: id-token ${idToken ? "granted without a sign-in" : "missing for a sign-in"}`);
                for (const [scope, level] of Object.entries(job.permissions)) {
                    const allowed = scope === "contents" || scope === "id-token" || (scope === "pull-requests" && runsPreview(job));
                    if (level === "write" && scope !== "id-token" && !allowed) problems.push(`${wf.file} ${name}: ${scope}: write`);
                    if (!allowed) problems.push(`${wf.file} ${name}: permission ${scope}`);
                }
                if (job.permissions.contents === "write") problems.push(`${wf.file} ${name}: contents: write`);
            }
            return problems;
        }),

    "checkout keeps no credentials": (wfs) =>
        wfs.flatMap((wf) =>
            jobsOf(wf).flatMap(([name, job]) =>
                steps(job)
                    .filter((s) => /^actions\/checkout@/.test(s.uses ?? "") && s.with?.["persist-credentials"] !== false)
                    .map(() => `${wf.file} ${name}: checkout persists the token`),
            ),
        ),

    "each job on a stack has the stack's concurrency group; up is never cancelled": (wfs) => {
        const problems: string[] = [];
        const upGroups = new Set<string>();
        for (const wf of wfs) {
            for (const [name, job] of jobsOf(wf).filter(([, j]) => pulumiCommand(j) !== undefined || runsUp(j))) {
                const concurrency = concurrencyOf(job);
                if (!concurrency || !/vars\.PULUMI_STACK/.test(concurrency.group)) {
                    problems.push(`${wf.file} ${name}: no concurrency group naming the stack`);
                    continue;
                }
                if (runsUp(job)) {
                    upGroups.add(concurrency.group);
                    if (concurrency["cancel-in-progress"] !== false) problems.push(`${wf.file} ${name}: an up could be cancelled halfway`);
                }
            }
        }
        if (upGroups.size > 1) problems.push(`up jobs in different groups: ${[...upGroups].join(", ")}`);
        return problems;
    },

    "a weekly schedule runs up, then npm run validate on the stack outputs": (wfs) => {
        const scheduled = wfs.filter((wf) => Array.isArray(wf.on.schedule) && jobsOf(wf).some(([, j]) => runsUp(j)));
        if (scheduled.length === 0) return ["no scheduled workflow runs up"];
        return scheduled.flatMap((wf) => {
            const problems: string[] = [];
            const crons = (wf.on.schedule as { cron: string }[]).map((s) => s.cron.trim().split(/\s+/));
            if (!crons.some((f) => f.length === 5 && f[2] === "*" && f[3] === "*" && /^[0-6]$/.test(f[4])))
                problems.push(`${wf.file}: no weekly cron`);
            for (const [name, job] of jobsOf(wf).filter(([, j]) => runsUp(j))) {
                const all = steps(job);
                const up = all.findIndex((s) => pulumiCommand({ steps: [s] }) === "up");
                const validate = all.findIndex((s) => /npm run (--silent )?validate/.test(s.run ?? ""));
                if (validate < 0 || validate < up) problems.push(`${wf.file} ${name}: no npm run validate after up`);
                else if (!/pulumi stack output .*--json.*--show-secrets.*\|.*--stack-outputs -/.test(all[validate].run ?? "")) {
                    problems.push(`${wf.file} ${name}: validate does not read the stack outputs from stdin`);
                }
            }
            return problems;
        });
    },

    "fork pull requests and missing variables skip with a notice instead of failing": (wfs) =>
        wfs.flatMap((wf) =>
            jobsOf(wf)
                .filter(([, job]) => signsIn(job))
                .flatMap(([name, job]) => {
                    const gate = gateOf(wf, job);
                    if (!gate) return [`${wf.file} ${name}: signs in without a gate job that emits a notice`];
                    const problems: string[] = [];
                    if (!/needs\.\w+\.outputs\.ready == 'true'/.test(job.if ?? ""))
                        problems.push(`${wf.file} ${name}: does not wait for the gate's verdict`);
                    if (typeof gate.permissions !== "object" || Object.keys(gate.permissions).length > 0) {
                        problems.push(`${wf.file} ${name}: its gate holds permissions`);
                    }
                    const gateEnv = steps(gate).flatMap((s) => Object.keys(s.env ?? {}));
                    const script = steps(gate)
                        .map((s) => s.run ?? "")
                        .join("\n");
                    for (const variable of requiredVars(job)) {
                        if (!gateEnv.includes(variable) || !script.includes(variable))
                            problems.push(`${wf.file} ${name}: the gate does not check ${variable}`);
                    }
                    if ("pull_request" in wf.on && !/head\.repo\.full_name != github\.repository/.test(JSON.stringify(gate))) {
                        problems.push(`${wf.file} ${name}: fork pull requests are not recognised`);
                    }
                    return problems;
                }),
        ),
};

const workflows = loadAll();

it("has the three workflows: tests, previews and deploys", () => {
    expect(workflows.map((wf) => wf.file)).toEqual(["ci.yml", "deploy.yml", "preview.yml"]);
    expect(
        workflows.flatMap((wf) =>
            jobsOf(wf)
                .filter(([, j]) => runsPreview(j))
                .map(([n]) => `${wf.file}:${n}`),
        ),
    ).toEqual(["preview.yml:preview"]);
    expect(
        workflows.flatMap((wf) =>
            jobsOf(wf)
                .filter(([, j]) => runsUp(j))
                .map(([n]) => `${wf.file}:${n}`),
        ),
    ).toEqual(["deploy.yml:up"]);
});

describe.each(Object.entries(rules))("%s", (_name, rule) => {
    it("holds for the workflows", () => {
        expect(rule(workflows)).toEqual([]);
    });
});

/** A copy of the workflows with one file's text changed. */
function mutate(file: string, edit: (text: string) => string): Workflow[] {
    return workflows.map((wf) => {
        if (wf.file !== file) return wf;
        const text = edit(wf.text);
        expect(text).not.toBe(wf.text);
        return load(wf.file, text);
    });
}

describe("each rule catches a broken copy", () => {
    const cases: [string, string, Workflow[]][] = [
        [
            "every action is pinned to a full commit SHA with its version in a comment",
            "tag",
            mutate("preview.yml", (t) => t.replace(/azure\/login@[0-9a-f]{40}/, "azure/login@v2")),
        ],
        [
            "every action is pinned to a full commit SHA with its version in a comment",
            "comment",
            mutate("ci.yml", (t) => t.replace(/(actions\/checkout@[0-9a-f]{40}) # v5\.0\.0/, "$1")),
        ],
        ["the Pulumi CLI version is pinned", "unpinned", mutate("deploy.yml", (t) => t.replace(/\n\s+pulumi-version: [\d.]+/, ""))],
        [
            "no job holds a stored secret",
            "passphrase",
            mutate("deploy.yml", (t) =>
                t.replace("ARM_USE_OIDC:", "PULUMI_CONFIG_PASSPHRASE: ${{ secrets.PULUMI_CONFIG_PASSPHRASE }}\n      ARM_USE_OIDC:"),
            ),
        ],
        [
            "previews run only on pull_request, with the preview identity",
            "push",
            mutate("preview.yml", (t) => t.replace("on:\n  pull_request:", "on:\n  pull_request:\n  push:")),
        ],
        [
            "previews run only on pull_request, with the preview identity",
            "deploy identity",
            mutate("preview.yml", (t) => t.replace(/AZURE_PREVIEW_CLIENT_ID \}\}/g, "AZURE_DEPLOY_CLIENT_ID }}")),
        ],
        [
            "up runs only on push to main or the schedule, in the production environment, with the deploy identity",
            "pull_request",
            mutate("deploy.yml", (t) => t.replace("on:\n  push:", "on:\n  pull_request:\n  push:")),
        ],
        [
            "up runs only on push to main or the schedule, in the production environment, with the deploy identity",
            "environment",
            mutate("deploy.yml", (t) => t.replace("    environment: production\n", "")),
        ],
        [
            "permissions are set per job, id-token: write only where a job signs in",
            "gate token",
            mutate("preview.yml", (t) =>
                t.replace(
                    "  gate:\n    runs-on: ubuntu-latest\n    permissions: {}",
                    "  gate:\n    runs-on: ubuntu-latest\n    permissions:\n      id-token: write",
                ),
            ),
        ],
        [
            "permissions are set per job, id-token: write only where a job signs in",
            "workflow level",
            mutate("ci.yml", (t) => t.replace("permissions: {}", "permissions: write-all")),
        ],
        [
            "checkout keeps no credentials",
            "persist",
            mutate("ci.yml", (t) => t.replace("persist-credentials: false", "persist-credentials: true")),
        ],
        [
            "each job on a stack has the stack's concurrency group; up is never cancelled",
            "cancel",
            mutate("deploy.yml", (t) => t.replace("cancel-in-progress: false", "cancel-in-progress: true")),
        ],
        [
            "a weekly schedule runs up, then npm run validate on the stack outputs",
            "no validate",
            mutate("deploy.yml", (t) => t.replace(/npm run --silent validate/, "echo skipped")),
        ],
        [
            "fork pull requests and missing variables skip with a notice instead of failing",
            "unchecked variable",
            mutate("deploy.yml", (t) =>
                t.replace(
                    "          AZURE_DEPLOY_CLIENT_ID: ${{ vars.AZURE_DEPLOY_CLIENT_ID }}\n          PULUMI_BACKEND_URL",
                    "          PULUMI_BACKEND_URL",
                ),
            ),
        ],
        [
            "fork pull requests and missing variables skip with a notice instead of failing",
            "forks",
            mutate("preview.yml", (t) => t.replace(/FROM_FORK: .*\n/, "FROM_FORK: false\n")),
        ],
    ];

    it.each(cases)("%s (%s)", (rule, _mutation, broken) => {
        expect(rules[rule](broken).length).toBeGreaterThan(0);
    });

    it("covers every rule", () => {
        expect(new Set(cases.map(([rule]) => rule))).toEqual(new Set(Object.keys(rules)));
    });
});
