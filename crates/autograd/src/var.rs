//! [`Var`]: a tensor in a recorded computation, and the reverse pass over it.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

use norma_tensor::Tensor;

use crate::function::{Backward, BackwardContext};
use crate::{is_grad_enabled, AutogradError, Param, Result};

thread_local! {
    // Node ids only grow, so an input's id is always smaller than its output's: sorting by id
    // is a topological order of any graph.
    static NEXT_ID: Cell<u64> = const { Cell::new(0) };
}

fn next_id() -> u64 {
    NEXT_ID.with(|n| {
        let id = n.get();
        n.set(id + 1);
        id
    })
}

/// A value in a define-by-run graph: a tensor plus how it was computed.
///
/// Operations on `Var`s compute their result immediately and, when any input requires a
/// gradient (and recording is on, see [`crate::no_grad`]), remember their inputs and
/// derivative. [`Var::backward`] on a scalar result then walks that record in reverse and
/// accumulates gradients into the [`Param`]s it reaches. The graph is dropped with the last
/// `Var` that refers to it; parameters outlive it.
#[derive(Clone)]
pub struct Var {
    node: Rc<Node>,
}

struct Node {
    id: u64,
    /// Shared with the parameter for a leaf: recording a parameter does not copy it.
    value: Rc<Tensor>,
    origin: Origin,
}

enum Origin {
    Constant,
    Param(Param),
    Op {
        inputs: Vec<Var>,
        backward: Box<dyn Backward>,
    },
}

impl Var {
    fn new(value: Rc<Tensor>, origin: Origin) -> Var {
        Var {
            node: Rc::new(Node {
                id: next_id(),
                value,
                origin,
            }),
        }
    }

    /// A value that needs no gradient (input data, labels, frozen statistics).
    pub fn constant(value: Tensor) -> Var {
        Var::new(Rc::new(value), Origin::Constant)
    }

    /// A leaf that accumulates its gradient into `param` (use [`Param::var`]).
    pub(crate) fn leaf(param: &Param) -> Var {
        // The value the parameter holds now, shared, not copied: `Param::update` copies a shared
        // value before changing it and `set_value` replaces it, so this snapshot never changes.
        let value = param.value();
        if is_grad_enabled() && param.requires_grad() {
            Var::new(value, Origin::Param(param.clone()))
        } else {
            Var::new(value, Origin::Constant)
        }
    }

    /// Records an operation: `output` was computed from `inputs`, and `backward` knows its
    /// derivative. When no input requires a gradient, or inside [`crate::no_grad`], nothing is
    /// recorded and the result is a constant. This is the extension point for operations
    /// defined outside this crate; see [`Backward`].
    pub fn from_op(inputs: &[&Var], output: Tensor, backward: impl Backward) -> Var {
        if is_grad_enabled() && inputs.iter().any(|v| v.requires_grad()) {
            Var::new(
                Rc::new(output),
                Origin::Op {
                    inputs: inputs.iter().map(|&v| v.clone()).collect(),
                    backward: Box::new(backward),
                },
            )
        } else {
            Var::constant(output)
        }
    }

    /// The computed value.
    pub fn value(&self) -> &Tensor {
        &self.node.value
    }

    /// The value's shape.
    pub fn shape(&self) -> &[usize] {
        self.node.value.shape()
    }

    /// Whether gradients flow back through this value to some parameter.
    pub fn requires_grad(&self) -> bool {
        !matches!(self.node.origin, Origin::Constant)
    }

    /// The same value, cut from the graph.
    pub fn detach(&self) -> Var {
        Var::constant(self.value().clone())
    }

    /// Back-propagates from this scalar: adds ∂self/∂p to the gradient of every parameter `p`
    /// this value depends on.
    pub fn backward(&self) -> Result<()> {
        if self.value().len() != 1 {
            return Err(AutogradError::NotScalar {
                shape: self.shape().to_vec(),
            });
        }
        self.propagate(Tensor::ones(self.shape()))
    }

    /// Back-propagates from this value with `grad` as ∂L/∂self for some scalar L (PyTorch's
    /// `y.backward(gradient)`): adds ∂L/∂p to the gradient of every parameter `p` this value
    /// depends on. `grad` has the value's shape.
    ///
    /// ```
    /// use norma_autograd::{Param, Var};
    /// use norma_tensor::Tensor;
    /// let p = Param::new(Tensor::from_vec(&[2], vec![1.0, 2.0])?);
    /// let y = p.var().mul(&p.var())?; // y = p², ∂y/∂p = 2p
    /// y.backward_with(Tensor::from_vec(&[2], vec![1.0, 10.0])?)?;
    /// assert_eq!(p.grad().unwrap().as_slice(), &[2.0, 40.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn backward_with(&self, grad: Tensor) -> Result<()> {
        if grad.shape() != self.shape() {
            return Err(AutogradError::OutputGradShape {
                output: self.shape().to_vec(),
                grad: grad.shape().to_vec(),
            });
        }
        self.propagate(grad)
    }

    /// The backward pass from this node, seeded with `seed` (its shape checked by the caller).
    fn propagate(&self, seed: Tensor) -> Result<()> {
        let order = self.reachable_requiring_grad();
        let mut grads: HashMap<u64, Tensor> = HashMap::new();
        grads.insert(self.node.id, seed);
        for var in order {
            // A node absent from `grads` does not influence the output.
            let Some(grad) = grads.remove(&var.node.id) else {
                continue;
            };
            match &var.node.origin {
                Origin::Constant => {}
                Origin::Param(p) => p.accumulate_grad(grad)?,
                Origin::Op { inputs, backward } => {
                    let ctx = BackwardContext {
                        inputs,
                        output: &var.node.value,
                        grad_output: &grad,
                    };
                    let input_grads = backward.backward(&ctx)?;
                    check_gradients(backward.name(), inputs, &input_grads)?;
                    for (input, g) in inputs.iter().zip(input_grads) {
                        let Some(g) = g else { continue };
                        if !input.requires_grad() {
                            continue;
                        }
                        match grads.get_mut(&input.node.id) {
                            Some(acc) => acc.axpy(1.0, &g)?,
                            None => {
                                grads.insert(input.node.id, g);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Every node this one depends on that requires a gradient, outputs before inputs.
    fn reachable_requiring_grad(&self) -> Vec<Var> {
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![self.clone()];
        let mut found = Vec::new();
        while let Some(v) = stack.pop() {
            if !v.requires_grad() || !seen.insert(v.node.id) {
                continue;
            }
            if let Origin::Op { inputs, .. } = &v.node.origin {
                stack.extend(inputs.iter().cloned());
            }
            found.push(v);
        }
        found.sort_unstable_by_key(|v| std::cmp::Reverse(v.node.id));
        found
    }
}

fn check_gradients(op: &'static str, inputs: &[Var], grads: &[Option<Tensor>]) -> Result<()> {
    if grads.len() != inputs.len() {
        return Err(AutogradError::GradientCount {
            op,
            expected: inputs.len(),
            got: grads.len(),
        });
    }
    for (i, (input, g)) in inputs.iter().zip(grads).enumerate() {
        if let Some(g) = g {
            if g.shape() != input.shape() {
                return Err(AutogradError::GradientShape {
                    op,
                    input: i,
                    expected: input.shape().to_vec(),
                    got: g.shape().to_vec(),
                });
            }
        }
    }
    Ok(())
}

impl fmt::Debug for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = match &self.node.origin {
            Origin::Constant => "constant".to_string(),
            Origin::Param(_) => "parameter".to_string(),
            Origin::Op { backward, .. } => format!("op {}", backward.name()),
        };
        write!(f, "Var({origin}, {:?})", self.node.value)
    }
}
