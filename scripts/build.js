// Compiles the project like `tsc -p .`, with one extra pass over the library's core modules
// (src/**/*.ts, not src/liveroll/): their functions and methods are emitted in a form V8 compiles when
// the module loads instead of on first call.
//
// Why: a newcomer runs about a hundred of tableroll's functions for the first time during its
// handoff, and V8 compiles each lazily, on its first call, while the lock is held. V8 compiles a
// function expression in parentheses together with its enclosing code (its "possibly invoked
// function expression" heuristic), so the pass turns
//   function f() {}         into  const f = (function f() {});  hoisted above the module's code
//   class C { m() {} }      into  class C { static { Object.defineProperty(this.prototype, 'm',
//                                   { value: (function m() {}), writable: true, ... }); } }
//   (a) => a + 1            into  (function (a) { return a + 1; })   if it uses no `this`,
//                                   `arguments`, `super` or `new.target`
// The compile work moves to import time. Constructors, arrows that use `this`, methods that use
// `super` and methods with computed or private names stay as they are, and a method whose body
// uses an outer binding of its own name stops the build (its new name would shadow it); the test
// eager-compile.test.ts checks with V8's own log that nothing else is left to a newcomer. Source
// maps and declaration files still point at the TypeScript source.
//
// What differs from tsc's output, and why it does not matter here: methods become constructible
// functions with a `prototype` property, and a function declaration is not callable before its
// module has started evaluating (nothing in src/ calls another module's functions from a
// circular import's top level).
//
// Usage: node scripts/build.js [--no-eager] [--out-dir DIR]   (exit status 1 on a type error,
// like tsc). --no-eager emits what tsc alone would, for the benchmark's comparison.
// @ts-check (type-checked by `npm run check:scripts`)
import path from 'node:path';
import { parseArgs } from 'node:util';
import ts from 'typescript';

const { values: flags } = parseArgs({
  options: { 'no-eager': { type: 'boolean', default: false }, 'out-dir': { type: 'string' } },
});

const root = path.resolve(import.meta.dirname, '..');
// The core: every module under src/, in any folder, except liveroll's (a long-running CLI).
const eagerDir = path.join(root, 'src');
const notEager = path.join(root, 'src', 'liveroll');

function main() {
  const configPath = path.join(root, 'tsconfig.json');
  const { config, error } = ts.readConfigFile(configPath, ts.sys.readFile);
  if (error) return report([error]);
  const parsed = ts.parseJsonConfigFileContent(config, ts.sys, root);
  if (parsed.errors.length) return report(parsed.errors);
  const options = { ...parsed.options };
  if (flags['out-dir']) options.outDir = path.resolve(flags['out-dir']);
  const program = ts.createProgram({ rootNames: parsed.fileNames, options });
  const transformers = flags['no-eager'] ? {} : { after: [eagerCompile] };
  const result = program.emit(undefined, undefined, undefined, false, transformers);
  return report([...ts.getPreEmitDiagnostics(program), ...result.diagnostics]);
}

/**
 * @param {readonly ts.Diagnostic[]} diagnostics
 * @returns {number} the exit status
 */
function report(diagnostics) {
  if (diagnostics.length === 0) return 0;
  /** @type {ts.FormatDiagnosticsHost} */
  const host = {
    getCanonicalFileName: (f) => f,
    getCurrentDirectory: () => root,
    getNewLine: () => '\n',
  };
  const format = process.stderr.isTTY
    ? ts.formatDiagnosticsWithColorAndContext
    : ts.formatDiagnostics;
  process.stderr.write(format(diagnostics, host));
  return diagnostics.some((d) => d.category === ts.DiagnosticCategory.Error) ? 1 : 0;
}

/** True for a file of the core, under src/ but not src/liveroll/. */
/** @param {string} fileName */
function isCore(fileName) {
  const file = path.resolve(fileName);
  /** @param {string} dir */
  const inside = (dir) => file.startsWith(dir + path.sep);
  return inside(eagerDir) && !inside(notEager);
}

/** The `after` transformer: only the core's files are rewritten. */
/**
 * @param {ts.TransformationContext} context
 * @returns {ts.Transformer<ts.SourceFile>}
 */
function eagerCompile(context) {
  const f = context.factory;
  return (sourceFile) => {
    if (!isCore(sourceFile.fileName)) return sourceFile;
    /** @type {(node: ts.Node) => ts.Node} */
    const visit = (node) => {
      const visited = ts.visitEachChild(node, visit, context);
      return ts.isArrowFunction(visited) && !usesOwnBindings(visited.body)
        ? arrowAsFunction(f, visited)
        : visited;
    };
    /** @type {ts.Statement[]} */
    const hoisted = [];
    /** @type {ts.Statement[]} */
    const rest = [];
    const statements = /** @type {ts.NodeArray<ts.Statement>} */ (
      ts.visitNodes(sourceFile.statements, visit)
    );
    for (const statement of statements) {
      const eager = eagerFunction(f, statement);
      if (eager) hoisted.push(eager);
      else rest.push(ts.isClassDeclaration(statement) ? eagerClass(f, statement) : statement);
    }
    // Declarations were hoisted; the expressions keep that by standing before any other code,
    // right after the imports (which are hoisted anyway).
    const imports = rest.filter((s) => ts.isImportDeclaration(s));
    const others = rest.filter((s) => !ts.isImportDeclaration(s));
    return f.updateSourceFile(sourceFile, [...imports, ...hoisted, ...others]);
  };
}

/** `[export] [async] function name() {}` -> `[export] const name = ([async] function name() {});` */
/**
 * @param {ts.NodeFactory} f
 * @param {ts.Statement} node
 * @returns {ts.VariableStatement | null}
 */
function eagerFunction(f, node) {
  if (!ts.isFunctionDeclaration(node) || !node.name || !node.body) return null;
  const mods = node.modifiers ?? [];
  if (mods.some((m) => m.kind === ts.SyntaxKind.DefaultKeyword)) return null;
  const exported = mods.filter((m) => m.kind === ts.SyntaxKind.ExportKeyword);
  const expression = functionExpression(f, node, node.name.text, node.body);
  const declaration = f.createVariableDeclaration(node.name, undefined, undefined, expression);
  const list = f.createVariableDeclarationList([declaration], ts.NodeFlags.Const);
  return ts.setOriginalNode(ts.setTextRange(f.createVariableStatement(exported, list), node), node);
}

/** Moves the class's eligible methods and accessors into one static block at its start. */
/**
 * @param {ts.NodeFactory} f
 * @param {ts.ClassDeclaration} node
 * @returns {ts.ClassDeclaration}
 */
function eagerClass(f, node) {
  /** @type {Map<string, { isStatic: boolean, name: string, props: ts.PropertyAssignment[] }>} */
  const defined = new Map(); // "static name" -> property assignments of its descriptor
  /** @type {ts.ClassElement[]} */
  const kept = [];
  for (const member of node.members) {
    const movable = movableMember(member);
    if (!movable) {
      kept.push(member);
      continue;
    }
    const { kind, name, body } = movable;
    // The method becomes `function name() {}`, whose name would shadow an outer `name` that
    // its body calls: a silent change of meaning, so the build refuses it.
    const original = /** @type {ts.MethodDeclaration | ts.AccessorDeclaration} */ (
      ts.getOriginalNode(movable.member)
    );
    if (original.body && refersTo(original.body, name)) {
      throw new Error(
        `${original.getSourceFile().fileName}: the method ${name} uses an outer ${name}, which ` +
          'the eager pass would shadow with the method itself; rename one of them',
      );
    }
    const isStatic = (ts.getModifiers(movable.member) ?? []).some(
      (m) => m.kind === ts.SyntaxKind.StaticKeyword,
    );
    const key = `${isStatic} ${name}`;
    const entry = defined.get(key) ?? { isStatic, name, props: [] };
    defined.set(key, entry);
    const fn = functionExpression(f, movable.member, name, body);
    entry.props.push(f.createPropertyAssignment(kind, fn));
  }
  if (defined.size === 0) return node;
  const statements = [...defined.values()].map(({ isStatic, name, props }) => {
    const target = isStatic
      ? f.createThis()
      : f.createPropertyAccessExpression(f.createThis(), 'prototype');
    if (props.some((p) => ts.isIdentifier(p.name) && p.name.text === 'value')) {
      props.push(f.createPropertyAssignment('writable', f.createTrue()));
    }
    props.push(f.createPropertyAssignment('configurable', f.createTrue()));
    const call = f.createCallExpression(
      f.createPropertyAccessExpression(f.createIdentifier('Object'), 'defineProperty'),
      undefined,
      [target, f.createStringLiteral(name), f.createObjectLiteralExpression(props, false)],
    );
    return f.createExpressionStatement(call);
  });
  const block = f.createClassStaticBlockDeclaration(f.createBlock(statements, true));
  return f.updateClassDeclaration(
    node,
    node.modifiers,
    node.name,
    node.typeParameters,
    node.heritageClauses,
    [block, ...kept],
  );
}

/**
 * A member the pass can move, with its descriptor key ('value', 'get' or 'set'), name and body;
 * null for one it must leave.
 * @param {ts.ClassElement} member
 * @returns {{ member: ts.MethodDeclaration | ts.AccessorDeclaration, kind: 'value' | 'get' | 'set', name: string, body: ts.Block } | null}
 */
function movableMember(member) {
  const kind = ts.isMethodDeclaration(member)
    ? 'value'
    : ts.isGetAccessorDeclaration(member)
      ? 'get'
      : ts.isSetAccessorDeclaration(member)
        ? 'set'
        : null;
  if (kind === null) return null;
  const method = /** @type {ts.MethodDeclaration | ts.AccessorDeclaration} */ (member);
  if (!ts.isIdentifier(method.name) || !method.body) return null;
  if (usesSuper(method.body)) return null; // `super` is only allowed inside methods
  return { member: method, kind, name: method.name.text, body: method.body };
}

/**
 * Whether `node` mentions the binding `name`: an identifier that is not a property's name.
 * @param {ts.Node} node
 * @param {string} name
 * @returns {boolean}
 */
function refersTo(node, name) {
  if (ts.isIdentifier(node) && node.text === name) {
    const parent = node.parent;
    const isPropertyName =
      (ts.isPropertyAccessExpression(parent) ||
        ts.isPropertyAssignment(parent) ||
        ts.isMethodDeclaration(parent) ||
        ts.isPropertyDeclaration(parent)) &&
      parent.name === node;
    return !isPropertyName;
  }
  return !!ts.forEachChild(node, (child) => refersTo(child, name));
}

/**
 * Whether an arrow body relies on bindings a function expression would replace: `this`,
 * `arguments`, `super` or `new.target` (looking into nested arrows, which share them).
 */
/**
 * @param {ts.Node} node
 * @returns {boolean}
 */
function usesOwnBindings(node) {
  switch (node.kind) {
    case ts.SyntaxKind.ThisKeyword:
    case ts.SyntaxKind.SuperKeyword:
    case ts.SyntaxKind.MetaProperty:
      return true;
    case ts.SyntaxKind.Identifier:
      return /** @type {ts.Identifier} */ (node).text === 'arguments';
    case ts.SyntaxKind.FunctionExpression:
    case ts.SyntaxKind.FunctionDeclaration:
      return false; // they bind their own
    case ts.SyntaxKind.ClassExpression:
    case ts.SyntaxKind.ClassDeclaration:
      return true; // field initializers see the arrow's `this`; not worth telling apart
    default:
      return !!ts.forEachChild(node, usesOwnBindings);
  }
}

/** `(a) => expr` -> `(function (a) { return expr; })`, for an arrow that uses no own bindings. */
/**
 * @param {ts.NodeFactory} f
 * @param {ts.ArrowFunction} node
 * @returns {ts.ParenthesizedExpression}
 */
function arrowAsFunction(f, node) {
  const asyncMod = (node.modifiers ?? []).filter((m) => m.kind === ts.SyntaxKind.AsyncKeyword);
  const body = ts.isBlock(node.body)
    ? node.body
    : ts.setTextRange(
        f.createBlock([ts.setTextRange(f.createReturnStatement(node.body), node.body)]),
        node.body,
      );
  const fn = f.createFunctionExpression(
    asyncMod,
    undefined,
    undefined,
    undefined,
    node.parameters,
    undefined,
    body,
  );
  ts.setOriginalNode(ts.setTextRange(fn, node), node);
  return f.createParenthesizedExpression(fn);
}

/**
 * @param {ts.Node} node
 * @returns {boolean}
 */
function usesSuper(node) {
  return node.kind === ts.SyntaxKind.SuperKeyword || !!ts.forEachChild(node, usesSuper);
}

/**
 * `(function name(params) body)`, async and generator kept, mapped to the original.
 * @param {ts.NodeFactory} f
 * @param {ts.FunctionDeclaration | ts.MethodDeclaration | ts.AccessorDeclaration} node
 * @param {string} name
 * @param {ts.Block} body
 * @returns {ts.ParenthesizedExpression}
 */
function functionExpression(f, node, name, body) {
  const asyncMod = (ts.getModifiers(node) ?? []).filter(
    (m) => m.kind === ts.SyntaxKind.AsyncKeyword,
  );
  const fn = f.createFunctionExpression(
    /** @type {ts.Modifier[]} */ (asyncMod),
    'asteriskToken' in node ? node.asteriskToken : undefined,
    name,
    undefined,
    node.parameters,
    undefined,
    body,
  );
  ts.setOriginalNode(ts.setTextRange(fn, node), node);
  return f.createParenthesizedExpression(fn);
}

process.exitCode = main();
