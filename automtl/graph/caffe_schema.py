"""The Caffe ``NetParameter`` schema, built at import time (no ``protoc`` needed).

One schema accepts both stock BVLC Caffe prototxt and the AutoMTL dialect: repeated
``pad/kernel_size/stride/dilation`` also take a single scalar, ``batch_norm_param`` carries
both Caffe's ``use_global_stats``/``moving_average_fraction`` and AutoMTL's
``track_running_stats``/``momentum``/``affine``, ``relu_param`` has AutoMTL's ``inplace``,
``pooling_param`` has ``round_mode`` (and the ``ceil_mode`` some forks write). Parameters of
layer types automtl cannot run (data, loss, LRN …) are still part of the schema, so such
files parse and fail later with a clear "unsupported layer type" error.
"""
from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_T = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "string": _T.TYPE_STRING, "bool": _T.TYPE_BOOL, "float": _T.TYPE_FLOAT, "double": _T.TYPE_DOUBLE,
    "int32": _T.TYPE_INT32, "uint32": _T.TYPE_UINT32, "int64": _T.TYPE_INT64, "uint64": _T.TYPE_UINT64,
    "bytes": _T.TYPE_BYTES,
}
_ENGINE = ("Engine", ["DEFAULT", "CAFFE", "CUDNN"])

# message name -> (nested enums, fields). A field is (label, type, name, number[, default]);
# label "?" optional, "*" repeated; type is a scalar name, a message name, or "enum:Name".
_MESSAGES: dict[str, tuple[list[tuple[str, list[str]]], list[tuple[Any, ...]]]] = {
    "BlobShape": ([], [("*", "int64", "dim", 1)]),
    "BlobProto": ([], [
        ("?", "BlobShape", "shape", 7), ("*", "float", "data", 5), ("*", "float", "diff", 6),
        ("*", "double", "double_data", 8), ("*", "double", "double_diff", 9),
        ("?", "int32", "num", 1, "0"), ("?", "int32", "channels", 2, "0"), ("?", "int32", "height", 3, "0"),
        ("?", "int32", "width", 4, "0")]),
    "FillerParameter": ([("VarianceNorm", ["FAN_IN", "FAN_OUT", "AVERAGE"])], [
        ("?", "string", "type", 1, "constant"), ("?", "float", "value", 2, "0"), ("?", "float", "min", 3, "0"),
        ("?", "float", "max", 4, "1"), ("?", "float", "mean", 5, "0"), ("?", "float", "std", 6, "1"),
        ("?", "int32", "sparse", 7, "-1"), ("?", "enum:VarianceNorm", "variance_norm", 8, "FAN_IN")]),
    "ParamSpec": ([("DimCheckMode", ["STRICT", "PERMISSIVE"])], [
        ("?", "string", "name", 1), ("?", "enum:DimCheckMode", "share_mode", 2),
        ("?", "float", "lr_mult", 3, "1"), ("?", "float", "decay_mult", 4, "1")]),
    "NetStateRule": ([], [
        ("?", "enum:.caffe.Phase", "phase", 1), ("?", "int32", "min_level", 2), ("?", "int32", "max_level", 3),
        ("*", "string", "stage", 4), ("*", "string", "not_stage", 5)]),
    "NetState": ([], [
        ("?", "enum:.caffe.Phase", "phase", 1, "TEST"), ("?", "int32", "level", 2, "0"),
        ("*", "string", "stage", 3)]),
    "ConvolutionParameter": ([_ENGINE], [
        ("?", "uint32", "num_output", 1), ("?", "bool", "bias_term", 2, "true"), ("*", "uint32", "pad", 3),
        ("*", "uint32", "kernel_size", 4), ("*", "uint32", "stride", 6), ("*", "uint32", "dilation", 18),
        ("?", "uint32", "pad_h", 9), ("?", "uint32", "pad_w", 10), ("?", "uint32", "kernel_h", 11),
        ("?", "uint32", "kernel_w", 12), ("?", "uint32", "stride_h", 13), ("?", "uint32", "stride_w", 14),
        ("?", "uint32", "group", 5, "1"), ("?", "FillerParameter", "weight_filler", 7),
        ("?", "FillerParameter", "bias_filler", 8), ("?", "enum:Engine", "engine", 15, "DEFAULT"),
        ("?", "int32", "axis", 16, "1"), ("?", "bool", "force_nd_im2col", 17, "false")]),
    "BatchNormParameter": ([], [
        ("?", "bool", "use_global_stats", 1), ("?", "float", "moving_average_fraction", 2, "0.999"),
        ("?", "float", "eps", 3, "1e-05"), ("?", "bool", "track_running_stats", 4, "true"),
        ("?", "float", "momentum", 5, "0.1"), ("?", "bool", "affine", 6, "true")]),
    "ScaleParameter": ([], [
        ("?", "int32", "axis", 1, "1"), ("?", "int32", "num_axes", 2, "1"), ("?", "FillerParameter", "filler", 3),
        ("?", "bool", "bias_term", 4, "false"), ("?", "FillerParameter", "bias_filler", 5)]),
    "BiasParameter": ([], [
        ("?", "int32", "axis", 1, "1"), ("?", "int32", "num_axes", 2, "1"), ("?", "FillerParameter", "filler", 3)]),
    "PoolingParameter": ([("PoolMethod", ["MAX", "AVE", "STOCHASTIC"]), ("RoundMode", ["CEIL", "FLOOR"]), _ENGINE], [
        ("?", "enum:PoolMethod", "pool", 1, "MAX"), ("*", "uint32", "pad", 4), ("*", "uint32", "kernel_size", 2),
        ("*", "uint32", "stride", 3), ("?", "uint32", "pad_h", 9), ("?", "uint32", "pad_w", 10),
        ("?", "uint32", "kernel_h", 5), ("?", "uint32", "kernel_w", 6), ("?", "uint32", "stride_h", 7),
        ("?", "uint32", "stride_w", 8), ("?", "enum:Engine", "engine", 11, "DEFAULT"),
        ("?", "bool", "global_pooling", 12, "false"), ("?", "enum:RoundMode", "round_mode", 13, "CEIL"),
        ("?", "bool", "ceil_mode", 14, "true")]),
    "ReLUParameter": ([_ENGINE], [
        ("?", "float", "negative_slope", 1, "0"), ("?", "enum:Engine", "engine", 2, "DEFAULT"),
        ("?", "bool", "inplace", 3, "false")]),
    "ReLU6Parameter": ([], [("?", "bool", "inplace", 1, "false")]),
    "PReLUParameter": ([], [("?", "FillerParameter", "filler", 1), ("?", "bool", "channel_shared", 2, "false")]),
    "SigmoidParameter": ([_ENGINE], [("?", "enum:Engine", "engine", 1, "DEFAULT")]),
    "TanHParameter": ([_ENGINE], [("?", "enum:Engine", "engine", 1, "DEFAULT")]),
    "SwishParameter": ([], [("?", "float", "beta", 1, "1")]),
    "EltwiseParameter": ([("EltwiseOp", ["PROD", "SUM", "MAX"])], [
        ("?", "enum:EltwiseOp", "operation", 1, "SUM"), ("*", "float", "coeff", 2),
        ("?", "bool", "stable_prod_grad", 3, "true")]),
    "ConcatParameter": ([], [("?", "int32", "axis", 2, "1"), ("?", "uint32", "concat_dim", 1, "1")]),
    "InnerProductParameter": ([], [
        ("?", "uint32", "num_output", 1), ("?", "bool", "bias_term", 2, "true"),
        ("?", "FillerParameter", "weight_filler", 3), ("?", "FillerParameter", "bias_filler", 4),
        ("?", "int32", "axis", 5, "1"), ("?", "bool", "transpose", 6, "false")]),
    "DropoutParameter": ([], [("?", "float", "dropout_ratio", 1, "0.5"), ("?", "bool", "scale_train", 2, "true")]),
    "FlattenParameter": ([], [("?", "int32", "axis", 1, "1"), ("?", "int32", "end_axis", 2, "-1")]),
    "SoftmaxParameter": ([_ENGINE], [("?", "enum:Engine", "engine", 1, "DEFAULT"), ("?", "int32", "axis", 2, "1")]),
    "InputParameter": ([], [("*", "BlobShape", "shape", 1)]),
    # Parsed so that files holding them load far enough to be rejected with a clear message.
    "TransformationParameter": ([], [
        ("?", "float", "scale", 1, "1"), ("?", "bool", "mirror", 2, "false"), ("?", "uint32", "crop_size", 3, "0"),
        ("?", "string", "mean_file", 4), ("*", "float", "mean_value", 5), ("?", "bool", "force_color", 6),
        ("?", "bool", "force_gray", 7)]),
    "DataParameter": ([("DB", ["LEVELDB", "LMDB"])], [
        ("?", "string", "source", 1), ("?", "uint32", "batch_size", 4), ("?", "uint32", "rand_skip", 7),
        ("?", "enum:DB", "backend", 8), ("?", "float", "scale", 2), ("?", "string", "mean_file", 3),
        ("?", "uint32", "crop_size", 5), ("?", "bool", "mirror", 6), ("?", "bool", "force_encoded_color", 9),
        ("?", "uint32", "prefetch", 10)]),
    "ImageDataParameter": ([], [
        ("?", "string", "source", 1), ("?", "uint32", "batch_size", 4), ("?", "uint32", "rand_skip", 7),
        ("?", "bool", "shuffle", 8), ("?", "uint32", "new_height", 9), ("?", "uint32", "new_width", 10),
        ("?", "bool", "is_color", 11), ("?", "float", "scale", 2), ("?", "string", "mean_file", 3),
        ("?", "uint32", "crop_size", 5), ("?", "bool", "mirror", 6), ("?", "string", "root_folder", 12)]),
    "LossParameter": ([("NormalizationMode", ["FULL", "VALID", "BATCH_SIZE", "NONE"])], [
        ("?", "int32", "ignore_label", 1), ("?", "enum:NormalizationMode", "normalization", 3),
        ("?", "bool", "normalize", 2)]),
    "AccuracyParameter": ([], [
        ("?", "uint32", "top_k", 1), ("?", "int32", "axis", 2), ("?", "int32", "ignore_label", 3)]),
    "LRNParameter": ([("NormRegion", ["ACROSS_CHANNELS", "WITHIN_CHANNEL"]), _ENGINE], [
        ("?", "uint32", "local_size", 1), ("?", "float", "alpha", 2), ("?", "float", "beta", 3),
        ("?", "enum:NormRegion", "norm_region", 4), ("?", "float", "k", 5), ("?", "enum:Engine", "engine", 6)]),
    "ReshapeParameter": ([], [
        ("?", "BlobShape", "shape", 1), ("?", "int32", "axis", 2), ("?", "int32", "num_axes", 3)]),
    "SliceParameter": ([], [
        ("?", "int32", "axis", 3), ("*", "uint32", "slice_point", 2), ("?", "uint32", "slice_dim", 1)]),
    "PowerParameter": ([], [("?", "float", "power", 1), ("?", "float", "scale", 2), ("?", "float", "shift", 3)]),
    "ELUParameter": ([], [("?", "float", "alpha", 1)]),
    "CropParameter": ([], [("?", "int32", "axis", 1), ("*", "uint32", "offset", 2)]),
    "ArgMaxParameter": ([], [("?", "bool", "out_max_val", 1), ("?", "uint32", "top_k", 2), ("?", "int32", "axis", 3)]),
    "PythonParameter": ([], [
        ("?", "string", "module", 1), ("?", "string", "layer", 2), ("?", "string", "param_str", 3),
        ("?", "bool", "share_in_parallel", 4)]),
    "LayerParameter": ([], [
        ("?", "string", "name", 1), ("?", "string", "type", 2), ("*", "string", "bottom", 3),
        ("*", "string", "top", 4), ("?", "enum:.caffe.Phase", "phase", 10), ("*", "float", "loss_weight", 5),
        ("*", "ParamSpec", "param", 6), ("*", "BlobProto", "blobs", 7), ("*", "bool", "propagate_down", 11),
        ("*", "NetStateRule", "include", 8), ("*", "NetStateRule", "exclude", 9),
        ("?", "TransformationParameter", "transform_param", 100), ("?", "LossParameter", "loss_param", 101),
        ("?", "AccuracyParameter", "accuracy_param", 102), ("?", "ArgMaxParameter", "argmax_param", 103),
        ("?", "ConcatParameter", "concat_param", 104), ("?", "ConvolutionParameter", "convolution_param", 106),
        ("?", "DataParameter", "data_param", 107), ("?", "DropoutParameter", "dropout_param", 108),
        ("?", "EltwiseParameter", "eltwise_param", 110), ("?", "ImageDataParameter", "image_data_param", 115),
        ("?", "InnerProductParameter", "inner_product_param", 117), ("?", "LRNParameter", "lrn_param", 118),
        ("?", "PoolingParameter", "pooling_param", 121), ("?", "PowerParameter", "power_param", 122),
        ("?", "ReLUParameter", "relu_param", 123), ("?", "SigmoidParameter", "sigmoid_param", 124),
        ("?", "SoftmaxParameter", "softmax_param", 125), ("?", "SliceParameter", "slice_param", 126),
        ("?", "TanHParameter", "tanh_param", 127), ("?", "PythonParameter", "python_param", 130),
        ("?", "PReLUParameter", "prelu_param", 131), ("?", "ReshapeParameter", "reshape_param", 133),
        ("?", "FlattenParameter", "flatten_param", 135), ("?", "BatchNormParameter", "batch_norm_param", 139),
        ("?", "ELUParameter", "elu_param", 140), ("?", "BiasParameter", "bias_param", 141),
        ("?", "ScaleParameter", "scale_param", 142), ("?", "InputParameter", "input_param", 143),
        ("?", "CropParameter", "crop_param", 144), ("?", "SwishParameter", "swish_param", 147),
        ("?", "ReLU6Parameter", "relu6_param", 200)]),
    "NetParameter": ([], [
        ("?", "string", "name", 1), ("*", "string", "input", 3), ("*", "BlobShape", "input_shape", 8),
        ("*", "int32", "input_dim", 4), ("?", "bool", "force_backward", 5, "false"), ("?", "NetState", "state", 6),
        ("?", "bool", "debug_info", 7, "false"), ("*", "LayerParameter", "layer", 100)]),
}


def _build_file() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(name="automtl_caffe.proto", package="caffe", syntax="proto2")
    phase = fdp.enum_type.add(name="Phase")
    for i, v in enumerate(["TRAIN", "TEST"]):
        phase.value.add(name=v, number=i)
    for msg_name, (enums, fields) in _MESSAGES.items():
        msg = fdp.message_type.add(name=msg_name)
        for enum_name, values in enums:
            enum = msg.enum_type.add(name=enum_name)
            for i, v in enumerate(values):
                enum.value.add(name=v, number=i)
        for label, ftype, fname, number, *default in fields:
            field = msg.field.add(name=fname, number=number)
            field.label = _T.LABEL_REPEATED if label == "*" else _T.LABEL_OPTIONAL
            if ftype in _SCALARS:
                field.type = _SCALARS[ftype]
            elif ftype.startswith("enum:"):
                field.type = _T.TYPE_ENUM
                ref = ftype[5:]
                field.type_name = ref if ref.startswith(".") else f".caffe.{msg_name}.{ref}"
            else:
                field.type = _T.TYPE_MESSAGE
                field.type_name = f".caffe.{ftype}"
            if default:
                field.default_value = default[0]
    return fdp


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_build_file())
NetParameter = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("caffe.NetParameter"))
LayerParameter = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("caffe.LayerParameter"))
