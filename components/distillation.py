"""Knowledge distillation (Hinton et al. 2015): a student learns from a teacher's softened outputs.

loss = soft_weight * T^2 * KL(softmax(teacher/T) || softmax(student/T))
     + (1 - soft_weight) * cross_entropy(labels, student)
The T^2 factor keeps the soft gradients on the scale of the hard ones when T changes.
The teacher runs in inference mode (its BatchNorm statistics are frozen) on the same
augmented batch the student sees.
"""

from __future__ import annotations

from components.keras import keras, tf


def distillation_loss(
    y: tf.Tensor, student_logits: tf.Tensor, teacher_logits: tf.Tensor, temperature: float, soft_weight: float
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(total, soft, hard) mean losses for one batch."""
    t = float(temperature)
    p_teacher = tf.nn.softmax(teacher_logits / t)
    log_p_student = tf.nn.log_softmax(student_logits / t)
    log_p_teacher = tf.nn.log_softmax(teacher_logits / t)
    soft = tf.reduce_mean(tf.reduce_sum(p_teacher * (log_p_teacher - log_p_student), axis=-1)) * t * t
    hard = tf.reduce_mean(
        keras.losses.sparse_categorical_crossentropy(y, student_logits, from_logits=True)
    )
    return soft_weight * soft + (1.0 - soft_weight) * hard, soft, hard


class Distiller(keras.Model):
    """Trains `student_logits` against a frozen `teacher_logits`; evaluates the student alone."""

    def __init__(
        self, student_logits: keras.Model, teacher_logits: keras.Model, temperature: float, soft_weight: float
    ) -> None:
        super().__init__(name="distiller")
        self.student = student_logits
        self.teacher = teacher_logits
        self.temperature = temperature
        self.soft_weight = soft_weight
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.soft_tracker = keras.metrics.Mean(name="soft_loss")
        self.hard_tracker = keras.metrics.Mean(name="hard_loss")
        self.acc = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def metrics(self) -> list:
        return [self.loss_tracker, self.soft_tracker, self.hard_tracker, self.acc]

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.student(x, training=training)

    def train_step(self, data: tuple) -> dict:
        x, y = data
        teacher_logits = self.teacher(x, training=False)
        with tf.GradientTape() as tape:
            student_logits = self.student(x, training=True)
            loss, soft, hard = distillation_loss(
                y, student_logits, teacher_logits, self.temperature, self.soft_weight
            )
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        for tracker, value in ((self.loss_tracker, loss), (self.soft_tracker, soft), (self.hard_tracker, hard)):
            tracker.update_state(value)
        self.acc.update_state(y, student_logits)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data: tuple) -> dict:
        x, y = data
        student_logits = self.student(x, training=False)
        hard = tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(y, student_logits, from_logits=True)
        )
        self.loss_tracker.update_state(hard)
        self.hard_tracker.update_state(hard)
        self.acc.update_state(y, student_logits)
        return {"loss": self.loss_tracker.result(), "accuracy": self.acc.result()}
