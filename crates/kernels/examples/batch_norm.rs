//! Batch norm with `norma-kernels` alone, on an `ndarray`: the training forward pass, its
//! gradient, the running statistics, and evaluation mode.
//!
//! ```sh
//! cargo run --release -p norma-kernels --example batch_norm
//! ```

use ndarray::{Array, ArrayD, IxDyn};
use norma_kernels::{
    backward_train, forward_eval, forward_train, update_running_stats, KernelError, SimdLevel,
};

fn main() -> Result<(), KernelError> {
    // A batch of 8 images with 3 channels of 4×4 pixels, with a different mean per channel.
    let x: ArrayD<f32> = Array::from_shape_fn(IxDyn(&[8, 3, 4, 4]), |d| {
        let (n, c, h, w) = (d[0], d[1], d[2], d[3]);
        (c as f32 * 10.0) + ((n * 31 + h * 7 + w * 3) % 11) as f32 * 0.5
    });
    let (gamma, beta) = ([1.0f32, 2.0, 0.5], [0.0f32, -1.0, 3.0]);
    println!("kernels run with {} instructions", SimdLevel::active());

    // Training: normalize with the batch's own statistics.
    let out = forward_train(x.view(), Some(&gamma), Some(&beta), 1e-5)?;
    for c in 0..3 {
        println!(
            "channel {c}: batch mean {:.3}, batch variance {:.3}",
            out.stats.mean()[c],
            out.stats.var()[c]
        );
    }

    // Backward: the gradient of the loss Σ y² / 2, whose output gradient is y itself.
    let grads = backward_train(x.view(), out.output.view(), &out.stats, Some(&gamma))?;
    println!("dγ = {:?}", grads.dgamma);
    println!("dβ = {:?}", grads.dbeta);

    // Running statistics, PyTorch's momentum rule (0.1), starting from mean 0 and variance 1.
    let (mut running_mean, mut running_var) = (vec![0.0f32; 3], vec![1.0f32; 3]);
    update_running_stats(&mut running_mean, &mut running_var, &out.stats, 0.1)?;
    println!("running mean {running_mean:?}, running variance {running_var:?}");

    // Evaluation: a single image, normalized with the running statistics.
    let one = x.slice(ndarray::s![0..1, .., .., ..]).to_owned().into_dyn();
    let y = forward_eval(
        one.view(),
        &running_mean,
        &running_var,
        Some(&gamma),
        Some(&beta),
        1e-5,
    )?;
    println!("eval output of one image: shape {:?}", y.shape());

    // A single value per channel cannot be normalized in training: a clear error, not NaN.
    let single = ArrayD::<f32>::zeros(IxDyn(&[1, 3]));
    match forward_train(single.view(), None, None, 1e-5) {
        Err(e) => println!("as expected: {e}"),
        Ok(_) => unreachable!("one value per channel has no variance"),
    }
    Ok(())
}
