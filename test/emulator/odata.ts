/**
 * The slice of OData query syntax the Dataverse contract uses: `$select`, `$filter` with eq/ne (and the other
 * comparisons, cheaply), and/or/not, parentheses, and `$expand=nav($select=…;$filter=…)`.
 */

export type EdmType = "Edm.Guid" | "Edm.String" | "Edm.Int32" | "Edm.Boolean" | "Edm.DateTimeOffset" | "Edm.Decimal";
export type JsonScalar = string | number | boolean | null;
export type JsonRecord = Record<string, JsonScalar>;

export interface EntityShape {
    /** Logical name, as in `Microsoft.Dynamics.CRM.<logicalName>`. */
    logicalName: string;
    key: string;
    properties: Record<string, EdmType>;
}

/** An OData error the router turns into `{"error":{code,message}}`. */
export class ODataError extends Error {
    constructor(
        readonly status: number,
        readonly code: string,
        message: string,
        readonly headers: Record<string, string> = {},
    ) {
        super(message);
    }
}

// contract: Requests and errors — a bad URL segment or property answers 0x80060888.
export const BAD_SEGMENT_CODE = "0x80060888";

export function unknownProperty(shape: EntityShape, property: string): ODataError {
    return new ODataError(
        400,
        BAD_SEGMENT_CODE,
        `Could not find a property named '${property}' on type 'Microsoft.Dynamics.CRM.${shape.logicalName}'.`,
    );
}

export function parseSelect(shape: EntityShape, raw: string | null): string[] | null {
    if (raw === null) return null;
    const names = raw
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s.length > 0);
    for (const name of names) if (!(name in shape.properties)) throw unknownProperty(shape, name);
    return names;
}

export function project(shape: EntityShape, record: JsonRecord, select: string[] | null): JsonRecord {
    if (select === null) return { ...record };
    // Dataverse always returns the primary key, whether selected or not.
    const out: JsonRecord = { [shape.key]: record[shape.key] ?? null };
    for (const name of select) out[name] = record[name] ?? null;
    return out;
}

// ---------------------------------------------------------------------------------------------------------
// $filter

type Literal = { type: "string" | "guid" | "null" | "boolean" | "number"; value: JsonScalar };
type Comparison = "eq" | "ne" | "gt" | "ge" | "lt" | "le";
export type FilterNode =
    | { kind: "and" | "or"; left: FilterNode; right: FilterNode }
    | { kind: "not"; operand: FilterNode }
    | { kind: "compare"; op: Comparison; property: string; literal: Literal };

type Token = { t: "ident"; v: string; pos: number } | { t: "literal"; v: Literal; pos: number } | { t: "lparen" | "rparen"; pos: number };

const GUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}/;
const NUMBER = /^-?\d+(\.\d+)?/;
const IDENT = /^[A-Za-z_][A-Za-z0-9_]*/;
const COMPARISONS: readonly string[] = ["eq", "ne", "gt", "ge", "lt", "le"];

function syntaxError(filter: string, pos: number): ODataError {
    return new ODataError(400, BAD_SEGMENT_CODE, `Syntax error at position ${pos} in '${filter}'.`);
}

function tokenize(filter: string): Token[] {
    const tokens: Token[] = [];
    let i = 0;
    while (i < filter.length) {
        const ch = filter[i];
        if (ch === " " || ch === "\t") {
            i++;
            continue;
        }
        if (ch === "(" || ch === ")") {
            tokens.push({ t: ch === "(" ? "lparen" : "rparen", pos: i });
            i++;
            continue;
        }
        if (ch === "'") {
            // contract: Requests and errors — a quote inside a literal is doubled.
            let value = "";
            let j = i + 1;
            for (;;) {
                if (j >= filter.length) throw syntaxError(filter, i);
                if (filter[j] === "'") {
                    if (filter[j + 1] === "'") {
                        value += "'";
                        j += 2;
                        continue;
                    }
                    break;
                }
                value += filter[j];
                j++;
            }
            tokens.push({ t: "literal", v: { type: "string", value }, pos: i });
            i = j + 1;
            continue;
        }
        const rest = filter.slice(i);
        // A GUID may start with digits or letters, so it is tried before numbers and identifiers.
        const guid = GUID.exec(rest);
        if (guid && !/[0-9A-Za-z_-]/.test(rest.charAt(guid[0].length))) {
            tokens.push({ t: "literal", v: { type: "guid", value: guid[0].toLowerCase() }, pos: i });
            i += guid[0].length;
            continue;
        }
        const num = NUMBER.exec(rest);
        if (num) {
            tokens.push({ t: "literal", v: { type: "number", value: Number(num[0]) }, pos: i });
            i += num[0].length;
            continue;
        }
        const ident = IDENT.exec(rest);
        if (ident) {
            const word = ident[0];
            if (word === "null") tokens.push({ t: "literal", v: { type: "null", value: null }, pos: i });
            else if (word === "true" || word === "false")
                tokens.push({ t: "literal", v: { type: "boolean", value: word === "true" }, pos: i });
            else tokens.push({ t: "ident", v: word, pos: i });
            i += word.length;
            continue;
        }
        throw syntaxError(filter, i);
    }
    return tokens;
}

export function parseFilter(shape: EntityShape, filter: string | null): FilterNode | null {
    if (filter === null || filter.trim() === "") return null;
    const tokens = tokenize(filter);
    let at = 0;
    const peek = (): Token | undefined => tokens[at];
    const endPos = filter.length;

    const keyword = (word: string): boolean => {
        const tok = peek();
        if (tok?.t === "ident" && tok.v === word) {
            at++;
            return true;
        }
        return false;
    };

    const parseOr = (): FilterNode => {
        let left = parseAnd();
        while (keyword("or")) left = { kind: "or", left, right: parseAnd() };
        return left;
    };
    const parseAnd = (): FilterNode => {
        let left = parseUnary();
        while (keyword("and")) left = { kind: "and", left, right: parseUnary() };
        return left;
    };
    const parseUnary = (): FilterNode => {
        if (keyword("not")) return { kind: "not", operand: parseUnary() };
        const tok = peek();
        if (tok?.t === "lparen") {
            at++;
            const inner = parseOr();
            const close = peek();
            if (close?.t !== "rparen") throw syntaxError(filter, close?.pos ?? endPos);
            at++;
            return inner;
        }
        return parseComparison();
    };
    const parseComparison = (): FilterNode => {
        const prop = peek();
        if (prop?.t !== "ident") throw syntaxError(filter, prop?.pos ?? endPos);
        at++;
        if (peek()?.t === "lparen") {
            // contains(), startswith() and friends are outside the contract's query forms.
            throw new ODataError(400, BAD_SEGMENT_CODE, `Unknown function '${prop.v}' in '${filter}'.`);
        }
        const propertyType = shape.properties[prop.v];
        if (propertyType === undefined) throw unknownProperty(shape, prop.v);
        const opTok = peek();
        if (opTok?.t !== "ident" || !COMPARISONS.includes(opTok.v)) throw syntaxError(filter, opTok?.pos ?? endPos);
        at++;
        const litTok = peek();
        if (litTok?.t !== "literal") throw syntaxError(filter, litTok?.pos ?? endPos);
        at++;
        checkOperandTypes(propertyType, litTok.v, opTok.v as Comparison);
        return { kind: "compare", op: opTok.v as Comparison, property: prop.v, literal: litTok.v };
    };

    const node = parseOr();
    if (at < tokens.length) throw syntaxError(filter, tokens[at].pos);
    return node;
}

const OPERATOR_KIND: Record<Comparison, string> = {
    eq: "Equal",
    ne: "NotEqual",
    gt: "GreaterThan",
    ge: "GreaterThanOrEqual",
    lt: "LessThan",
    le: "LessThanOrEqual",
};

function literalEdmType(literal: Literal): EdmType | null {
    switch (literal.type) {
        case "string":
            return "Edm.String";
        case "guid":
            return "Edm.Guid";
        case "boolean":
            return "Edm.Boolean";
        case "number":
            return Number.isInteger(literal.value) ? "Edm.Int32" : "Edm.Decimal";
        case "null":
            return null;
    }
}

/**
 * A quoted GUID against a Guid property is the classic mistake the contract warns about ("GUIDs are unquoted");
 * OData rejects it with this message rather than coercing.
 */
function checkOperandTypes(propertyType: EdmType, literal: Literal, op: Comparison): void {
    const litType = literalEdmType(literal);
    if (litType === null || litType === propertyType) return;
    const numeric = (t: EdmType): boolean => t === "Edm.Int32" || t === "Edm.Decimal";
    if (numeric(litType) && numeric(propertyType)) return;
    // A date compares against a quoted or bare ISO literal; the contract never filters on dates, so accept strings.
    if (propertyType === "Edm.DateTimeOffset" && litType === "Edm.String") return;
    throw new ODataError(
        400,
        BAD_SEGMENT_CODE,
        `A binary operator with incompatible types was detected. Found operand types '${propertyType}' and '${litType}' for operator kind '${OPERATOR_KIND[op]}'.`,
    );
}

function compareValues(actual: JsonScalar, literal: Literal): number | null {
    const expected = literal.value;
    if (actual === null || expected === null) return actual === expected ? 0 : null;
    if (typeof actual === "string" && typeof expected === "string") {
        // Dataverse compares strings and GUIDs case-insensitively (SQL collation).
        const a = actual.toLowerCase();
        const b = expected.toLowerCase();
        return a === b ? 0 : a < b ? -1 : 1;
    }
    if (typeof actual === "number" && typeof expected === "number") return actual - expected;
    if (typeof actual === "boolean" && typeof expected === "boolean") return actual === expected ? 0 : actual ? 1 : -1;
    return null;
}

export function evaluateFilter(node: FilterNode | null, record: JsonRecord): boolean {
    if (node === null) return true;
    switch (node.kind) {
        case "and":
            return evaluateFilter(node.left, record) && evaluateFilter(node.right, record);
        case "or":
            return evaluateFilter(node.left, record) || evaluateFilter(node.right, record);
        case "not":
            return !evaluateFilter(node.operand, record);
        case "compare": {
            const cmp = compareValues(record[node.property] ?? null, node.literal);
            switch (node.op) {
                case "eq":
                    return cmp === 0;
                case "ne":
                    return cmp !== 0;
                case "gt":
                    return cmp !== null && cmp > 0;
                case "ge":
                    return cmp !== null && cmp >= 0;
                case "lt":
                    return cmp !== null && cmp < 0;
                case "le":
                    return cmp !== null && cmp <= 0;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// $expand

export interface ExpandClause {
    navigation: string;
    select: string | null;
    filter: string | null;
}

/** Splits on a separator at parenthesis depth 0 (so `$select=a,b` inside an expand stays whole). */
function splitTopLevel(text: string, separator: string): string[] {
    const parts: string[] = [];
    let depth = 0;
    let quoted = false;
    let start = 0;
    for (let i = 0; i < text.length; i++) {
        const ch = text[i];
        if (ch === "'") quoted = !quoted;
        if (quoted) continue;
        if (ch === "(") depth++;
        else if (ch === ")") depth--;
        else if (ch === separator && depth === 0) {
            parts.push(text.slice(start, i));
            start = i + 1;
        }
    }
    parts.push(text.slice(start));
    return parts.map((p) => p.trim()).filter((p) => p.length > 0);
}

export function parseExpand(raw: string | null): ExpandClause[] {
    if (raw === null) return [];
    return splitTopLevel(raw, ",").map((item) => {
        const open = item.indexOf("(");
        if (open < 0) return { navigation: item, select: null, filter: null };
        if (!item.endsWith(")")) throw new ODataError(400, BAD_SEGMENT_CODE, `Syntax error in '$expand=${raw}'.`);
        const clause: ExpandClause = { navigation: item.slice(0, open).trim(), select: null, filter: null };
        for (const option of splitTopLevel(item.slice(open + 1, -1), ";")) {
            const eq = option.indexOf("=");
            const name = eq < 0 ? option : option.slice(0, eq);
            const value = eq < 0 ? "" : option.slice(eq + 1);
            if (name === "$select") clause.select = value;
            else if (name === "$filter") clause.filter = value;
            else throw new ODataError(400, BAD_SEGMENT_CODE, `The query option '${name}' is not supported inside $expand.`);
        }
        return clause;
    });
}
