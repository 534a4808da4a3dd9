// Compiles the project like `tsc -p .`, with one extra pass over the library's core modules
// (src/*.ts, not liveroll): their functions and methods are emitted in a form V8 compiles when
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
// `super` and methods with computed or private names stay as they are; the test
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
import path from 'node:path';
import { parseArgs } from 'node:util';
import ts from 'typescript';

const { values: flags } = parseArgs({
  options: { 'no-eager': { type: 'boolean', default: false }, 'out-dir': { type: 'string' } },
});

const root = path.resolve(import.meta.dirname, '..');
const eagerDir = path.join(root, 'src');

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

function report(diagnostics) {
  if (diagnostics.length === 0) return 0;
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

/** The `after` transformer: only files directly in src/ are rewritten. */
function eagerCompile(context) {
  const f = context.factory;
  return (sourceFile) => {
    if (path.dirname(path.resolve(sourceFile.fileName)) !== eagerDir) return sourceFile;
    const visit = (node) => {
      const visited = ts.visitEachChild(node, visit, context);
      return ts.isArrowFunction(visited) && !usesOwnBindings(visited.body)
        ? arrowAsFunction(f, visited)
        : visited;
    };
    const hoisted = [];
    const rest = [];
    for (const statement of ts.visitNodes(sourceFile.statements, visit)) {
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
function eagerFunction(f, node) {
  if (!ts.isFunctionDeclaration(node) || !node.name || !node.body) return null;
  const mods = node.modifiers ?? [];
  if (mods.some((m) => m.kind === ts.SyntaxKind.DefaultKeyword)) return null;
  const exported = mods.filter((m) => m.kind === ts.SyntaxKind.ExportKeyword);
  const expression = functionExpression(f, node, node.name.text);
  const declaration = f.createVariableDeclaration(node.name, undefined, undefined, expression);
  const list = f.createVariableDeclarationList([declaration], ts.NodeFlags.Const);
  return ts.setOriginalNode(ts.setTextRange(f.createVariableStatement(exported, list), node), node);
}

/** Moves the class's eligible methods and accessors into one static block at its start. */
function eagerClass(f, node) {
  const defined = new Map(); // "static name" -> property assignments of its descriptor
  const kept = [];
  for (const member of node.members) {
    const kind = memberKind(member);
    if (!kind) {
      kept.push(member);
      continue;
    }
    const isStatic = (member.modifiers ?? []).some((m) => m.kind === ts.SyntaxKind.StaticKeyword);
    const key = `${isStatic} ${member.name.text}`;
    if (!defined.has(key)) defined.set(key, { isStatic, name: member.name.text, props: [] });
    const fn = functionExpression(f, member, member.name.text);
    defined.get(key).props.push(f.createPropertyAssignment(kind, fn));
  }
  if (defined.size === 0) return node;
  const statements = [...defined.values()].map(({ isStatic, name, props }) => {
    const target = isStatic
      ? f.createThis()
      : f.createPropertyAccessExpression(f.createThis(), 'prototype');
    if (props.some((p) => p.name.text === 'value')) {
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

/** 'value', 'get' or 'set' for a member the pass can move, null for one it must leave. */
function memberKind(member) {
  if (!member.name || !ts.isIdentifier(member.name) || !member.body) return null;
  if (usesSuper(member.body)) return null; // `super` is only allowed inside methods
  if (ts.isMethodDeclaration(member)) return 'value';
  if (ts.isGetAccessorDeclaration(member)) return 'get';
  if (ts.isSetAccessorDeclaration(member)) return 'set';
  return null;
}

/**
 * Whether an arrow body relies on bindings a function expression would replace: `this`,
 * `arguments`, `super` or `new.target` (looking into nested arrows, which share them).
 */
function usesOwnBindings(node) {
  switch (node.kind) {
    case ts.SyntaxKind.ThisKeyword:
    case ts.SyntaxKind.SuperKeyword:
    case ts.SyntaxKind.MetaProperty:
      return true;
    case ts.SyntaxKind.Identifier:
      return node.text === 'arguments';
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

function usesSuper(node) {
  return node.kind === ts.SyntaxKind.SuperKeyword || !!ts.forEachChild(node, usesSuper);
}

/** `(function name(params) body)`, async and generator kept, mapped to the original. */
function functionExpression(f, node, name) {
  const asyncMod = (node.modifiers ?? []).filter((m) => m.kind === ts.SyntaxKind.AsyncKeyword);
  const fn = f.createFunctionExpression(
    asyncMod,
    node.asteriskToken,
    name,
    undefined,
    node.parameters,
    undefined,
    node.body,
  );
  ts.setOriginalNode(ts.setTextRange(fn, node), node);
  return f.createParenthesizedExpression(fn);
}

process.exitCode = main();
