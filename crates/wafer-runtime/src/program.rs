//! A compiled, linked program and the ways to call it: each ABI's calls, dispatched to the
//! module that implements that ABI.

use wasmtime::{InstancePre, Module};

use crate::cgi::{self, CgiOutput, CgiRequest, CommandOptions, Entry, Inputs};
use crate::command::Command;
use crate::error::{CallError, CompileError, Fault};
use crate::exports::{self, Params, Results, Signature};
use crate::guest::{CallOptions, GuestCtx, Instance, Wording};
use crate::http::HttpComponent;
use crate::service::Service;
use crate::typed::ComponentFunctions;
use crate::wapc;
use wafer_abi::Abi;

/// The ABI a module's exports call for: `__guest_call` makes it waPC, otherwise `_start`
/// makes it a CGI command, otherwise it is called by its exports.
fn detect(module: &Module) -> Abi {
    if module.get_export_index("__guest_call").is_some() {
        Abi::Wapc
    } else if module.get_export_index("_start").is_some() {
        Abi::Cgi
    } else {
        Abi::Exports
    }
}

/// A module compiled and linked against the host, ready to instantiate many times.
///
/// Cheap to clone; every call gets a fresh instance in a fresh store.
#[derive(Clone)]
pub struct Program {
    abi: Abi,
    code: Code,
}

/// What a program runs: a core module, or a component.
#[derive(Clone)]
enum Code {
    Module {
        pre: InstancePre<GuestCtx>,
        /// The CGI handler.
        entry: Entry,
        inputs: Inputs,
        /// How the waPC guest words "unknown operation", once asked.
        wording: Wording,
    },
    /// A command component (`wasi:cli/run`): run by `wafer run`, and served as a service
    /// when it is a WASI 0.2 one.
    Command {
        run: Command,
        service: Option<Service>,
    },
    Http(HttpComponent),
    /// A component called by its exported functions.
    Component(ComponentFunctions),
}

/// Why a component was called like a core module.
const NOT_A_MODULE: &str =
    "this program is a WASI 0.2 component, not a core module: it is not called this way";

impl Program {
    pub(crate) fn new(pre: InstancePre<GuestCtx>) -> Self {
        let module = pre.module();
        Self {
            abi: detect(module),
            code: Code::Module {
                entry: Entry::start(module),
                inputs: Inputs::of(module),
                wording: Wording::default(),
                pre,
            },
        }
    }

    pub(crate) fn command(run: Command, service: Option<Service>) -> Self {
        Self {
            abi: Abi::Service,
            code: Code::Command { run, service },
        }
    }

    pub(crate) fn http(component: HttpComponent) -> Self {
        Self {
            abi: Abi::Http,
            code: Code::Http(component),
        }
    }

    pub(crate) fn component(functions: ComponentFunctions) -> Self {
        Self {
            abi: Abi::Exports,
            code: Code::Component(functions),
        }
    }

    /// The functions a component exports, callable with JSON arguments (an HTTP component's
    /// too); `None` for a core module or a service.
    pub fn component_functions(&self) -> Option<ComponentFunctions> {
        match &self.code {
            Code::Http(component) => Some(component.functions().clone()),
            Code::Component(functions) => Some(functions.clone()),
            Code::Module { .. } | Code::Command { .. } => None,
        }
    }

    /// The core module's pre-instantiated form; an error for a component.
    fn pre(&self) -> Result<&InstancePre<GuestCtx>, CallError> {
        match &self.code {
            Code::Module { pre, .. } => Ok(pre),
            Code::Command { .. } | Code::Http(_) | Code::Component(_) => {
                Err(CallError::Unsupported(NOT_A_MODULE.into()))
            }
        }
    }

    /// The service, if this program is one: a WASI 0.2 command component. (A WASI 0.3
    /// command is run by `wafer run` only.)
    pub fn as_service(&self) -> Option<&Service> {
        match &self.code {
            Code::Command { service, .. } => service.as_ref(),
            _ => None,
        }
    }

    /// The HTTP component, if this program is one.
    pub fn as_http(&self) -> Option<&HttpComponent> {
        match &self.code {
            Code::Http(component) => Some(component),
            _ => None,
        }
    }

    /// How this program is called.
    pub fn abi(&self) -> Abi {
        self.abi
    }

    /// This program called through another ABI than the detected one, if the module has what
    /// that ABI needs: `_start` for CGI, `__guest_call` for waPC (any module has exports).
    pub fn with_abi(mut self, abi: Abi) -> Result<Self, CompileError> {
        let unsupported = |why: String| Err(CompileError::Unsupported(why));
        let pre = match (&self.code, abi) {
            (Code::Command { .. }, Abi::Service)
            | (Code::Http(_), Abi::Http)
            | (Code::Component(_), Abi::Exports) => return Ok(self),
            (Code::Command { .. } | Code::Http(_) | Code::Component(_), _) => {
                return unsupported(format!(
                    "this WASI 0.2 component is called as `{}`, not as `{abi}`",
                    self.abi
                ))
            }
            (Code::Module { .. }, Abi::Service | Abi::Http) => {
                return unsupported(format!(
                    "only a WASI 0.2 component can be called as `{abi}`; this is a core module"
                ))
            }
            (Code::Module { pre, .. }, _) => pre,
        };
        let needs = match abi {
            Abi::Cgi => Some("_start"),
            Abi::Wapc => Some("__guest_call"),
            Abi::Exports | Abi::Service | Abi::Http => None,
        };
        if let Some(export) = needs {
            if pre.module().get_export_index(export).is_none() {
                return unsupported(format!(
                    "the module cannot be called as `{abi}`: it exports no `{export}`"
                ));
            }
        }
        self.abi = abi;
        Ok(self)
    }

    /// This program run as a CGI command whose handler is `export` instead of `_start` (WAGI's
    /// `entrypoint`). `export` must be a function of no parameters and no results. A module
    /// without `_start` becomes a CGI program this way, unless `abi_chosen` (another ABI was
    /// asked for explicitly).
    pub fn with_entrypoint(mut self, export: &str, abi_chosen: bool) -> Result<Self, CompileError> {
        let unsupported = |why: String| Err(CompileError::Unsupported(why));
        let Code::Module { pre, entry, .. } = &mut self.code else {
            return unsupported(format!(
                "`entrypoint = \"{export}\"` is for core modules run as CGI; this is a WASI 0.2 component"
            ));
        };
        if abi_chosen && self.abi != Abi::Cgi {
            return unsupported(format!(
                "`entrypoint = \"{export}\"` is for CGI programs; this one is called as `{}`",
                self.abi
            ));
        }
        *entry = Entry::named(pre.module(), export)?;
        self.abi = Abi::Cgi;
        Ok(self)
    }

    /// Whether the program is a core module exporting a function named `name`.
    pub fn exports_function(&self, name: &str) -> bool {
        self.pre().is_ok_and(|pre| {
            matches!(
                pre.module().get_export(name),
                Some(wasmtime::ExternType::Func(_))
            )
        })
    }

    /// What of a CGI request this program can read; [`Program::run_cgi`] passes it nothing
    /// else.
    pub fn inputs(&self) -> Inputs {
        match &self.code {
            Code::Module { inputs, .. } => *inputs,
            Code::Http(component) => Inputs {
                host_calls: component.uses_capabilities(),
                ..Inputs::default()
            },
            Code::Component(functions) => Inputs {
                host_calls: functions.uses_capabilities(),
                ..Inputs::default()
            },
            Code::Command { .. } => Inputs::default(),
        }
    }

    /// Runs the program once as a CGI script, in a fresh instance, within the options' limits,
    /// with their host calls and directories.
    pub async fn run_cgi(&self, request: CgiRequest, options: &CallOptions) -> CgiOutput {
        match &self.code {
            Code::Module {
                pre, entry, inputs, ..
            } => cgi::run(pre, entry, *inputs, request, options).await,
            Code::Command { .. } | Code::Http(_) | Code::Component(_) => {
                CgiOutput::failed(Fault::Trap(NOT_A_MODULE.into()))
            }
        }
    }

    /// Runs the program once as a command (a WASI 0.1 module's `_start`, a WASI 0.2 or 0.3
    /// component's `wasi:cli/run`) with the host's stdio, no time limit, and the directories
    /// in `options`; returns its exit code. Log imports go to stderr.
    pub async fn run_command(&self, options: &CommandOptions) -> Result<i32, anyhow::Error> {
        match &self.code {
            Code::Module { pre, entry, .. } => cgi::run_command(pre, entry, options).await,
            Code::Command { run, .. } => run.run(options).await,
            Code::Http(_) => Err(anyhow::anyhow!(
                "this component is an HTTP handler, not a command: serve it with `wafer run \
                 --serve`"
            )),
            Code::Component(_) => Err(anyhow::anyhow!(
                "this component exports no `wasi:cli/run`: it is not a command (deploy it and \
                 call its functions)"
            )),
        }
    }

    /// Creates an instance, and initializes it as its ABI asks: `_initialize` (WASI reactors);
    /// for waPC also `_start` (a waPC module built as a command) and `wapc_init`; each if
    /// exported. A command's `_start` is its whole program, so other ABIs never run it here.
    pub async fn instantiate(&self, options: &CallOptions) -> Result<Instance, CallError> {
        let Code::Module { pre, wording, .. } = &self.code else {
            return Err(CallError::Unsupported(NOT_A_MODULE.into()));
        };
        let inits = match self.abi {
            Abi::Wapc => wapc::INITS,
            Abi::Cgi | Abi::Exports | Abi::Service | Abi::Http => &["_initialize"],
        };
        Instance::new(pre, self.abi, wording, inits, options).await
    }

    /// Calls a plain export in a fresh instance, with typed arguments and results.
    ///
    /// ```no_run
    /// # async fn demo(program: wafer_runtime::Program) -> Result<(), wafer_runtime::CallError> {
    /// use wafer_runtime::CallOptions;
    /// let sum: i32 = program.call(&CallOptions::default(), "sum", (3, 2)).await?;
    /// let greeting: String = program.call(&CallOptions::default(), "greet", "world").await?;
    /// # Ok(()) }
    /// ```
    pub async fn call<P: Params, R: Results>(
        &self,
        options: &CallOptions,
        name: &str,
        args: P,
    ) -> Result<R, CallError> {
        self.instantiate(options).await?.call(name, args).await
    }

    /// The parameter and result types of an export, or an error listing the exports there
    /// are.
    pub fn export_type(&self, name: &str) -> Result<Signature, CallError> {
        exports::export_type(self.pre()?.module(), name)
    }

    /// Calls a waPC operation in a fresh instance.
    pub async fn call_wapc(
        &self,
        options: &CallOptions,
        operation: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, CallError> {
        self.instantiate(options)
            .await?
            .call_wapc(operation, payload)
            .await
    }
}

/// Every call's future is `Send`, so that a server can run calls on any worker thread.
#[allow(dead_code)]
fn calls_are_send(program: &Program, instance: &mut Instance, options: &CallOptions) {
    fn send<T: Send>(_: T) {}
    send(program.run_cgi(CgiRequest::default(), options));
    send(program.call::<_, i32>(options, "f", 1));
    send(program.call_wapc(options, "op", b""));
    send(instance.call_wapc("op", b""));
    send(instance.call::<_, i32>("f", 1));
}
