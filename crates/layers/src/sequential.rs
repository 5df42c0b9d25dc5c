//! A chain of named modules.

use norma_autograd::{is_grad_enabled, Param, Var};

use crate::module::{join_name, Buffer, Mode, Module};
use crate::observe::SharedObserver;
use crate::{LayerError, Result};

/// `y = f_k(… f_2(f_1(x)))`, each child named. Parameters are named `<child>.<param>`
/// (`conv1.weight`), as in a PyTorch module with those attributes.
#[derive(Default)]
pub struct Sequential {
    children: Vec<(String, Box<dyn Module>)>,
    /// (child index, observer) pairs, see [`Sequential::observe_input`].
    observers: Vec<(usize, SharedObserver)>,
}

impl Sequential {
    /// An empty chain.
    pub fn new() -> Sequential {
        Sequential::default()
    }

    /// Appends a child under `name` (builder style).
    pub fn with(mut self, name: impl Into<String>, module: impl Module) -> Sequential {
        self.push(name, Box::new(module));
        self
    }

    /// Appends a boxed child under `name` (builder style).
    pub fn with_boxed(mut self, name: impl Into<String>, module: Box<dyn Module>) -> Sequential {
        self.push(name, module);
        self
    }

    /// Appends a boxed child under `name`.
    pub fn push(&mut self, name: impl Into<String>, module: Box<dyn Module>) {
        self.children.push((name.into(), module));
    }

    /// The children in order.
    pub fn children(&self) -> impl Iterator<Item = (&str, &dyn Module)> {
        self.children.iter().map(|(n, m)| (n.as_str(), m.as_ref()))
    }

    /// Takes the children out, in order.
    pub fn into_children(self) -> Vec<(String, Box<dyn Module>)> {
        self.children
    }

    /// Shows the input of child `name` to `observer` on every training forward pass (one that
    /// records a graph; see [`crate::observe`]).
    ///
    /// Errors: no child of that name.
    pub fn observe_input(&mut self, name: &str, observer: SharedObserver) -> Result<()> {
        let index = self
            .children
            .iter()
            .position(|(n, _)| n == name)
            .ok_or_else(|| LayerError::Config {
                layer: "Sequential".into(),
                reason: format!(
                    "no child named '{name}' to observe (children: {})",
                    self.children
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        self.observers.push((index, observer));
        Ok(())
    }

    /// Detaches every observer.
    pub fn clear_observers(&mut self) {
        self.observers.clear();
    }

    /// Number of children.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// True without children.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }
}

impl Module for Sequential {
    fn forward(&mut self, input: &Var) -> Result<Var> {
        let mut x = input.clone();
        let observing = !self.observers.is_empty() && is_grad_enabled();
        for (i, (name, child)) in self.children.iter_mut().enumerate() {
            if observing {
                for (_, observer) in self.observers.iter().filter(|(at, _)| *at == i) {
                    let mut observer = observer.try_borrow_mut().map_err(|_| LayerError::Config {
                        layer: "Sequential".into(),
                        reason: format!(
                            "the observer of '{name}' is borrowed elsewhere during a forward pass (drop the borrow first)"
                        ),
                    })?;
                    observer.observe(name, x.value());
                }
            }
            x = child.forward(&x)?;
        }
        Ok(x)
    }

    fn collect_params(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        for (name, child) in &self.children {
            child.collect_params(&join_name(prefix, name), out);
        }
    }

    fn collect_buffers(&self, prefix: &str, out: &mut Vec<(String, Buffer)>) {
        for (name, child) in &self.children {
            child.collect_buffers(&join_name(prefix, name), out);
        }
    }

    fn children_mut(&mut self) -> Vec<(&str, &mut dyn Module)> {
        self.children
            .iter_mut()
            .map(|(n, m)| (n.as_str(), m.as_mut() as &mut dyn Module))
            .collect()
    }

    fn set_mode(&mut self, mode: Mode) {
        for (_, child) in &mut self.children {
            child.set_mode(mode);
        }
    }

    fn describe(&self) -> String {
        let lines: Vec<String> = self
            .children
            .iter()
            .map(|(n, m)| format!("  ({n}): {}", m.describe()))
            .collect();
        format!("Sequential(\n{}\n)", lines.join("\n"))
    }
}
