"""What the desktop user is told at plugin load: one message-bar notice when TensorFlow is missing."""

from ..engine.dependencies import tensorflow_available, tensorflow_missing_text

TITLE = "Seamless Inference"


def tr(text: str) -> str:
    """Translate a user-facing string (the algorithms' context)."""
    from qgis.PyQt.QtCore import QCoreApplication

    return QCoreApplication.translate("SeamlessInference", text)


def notify_missing_tensorflow(iface) -> bool:
    """If TensorFlow is not importable, show one short warning line in the message bar whose Details button
    gives the interpreter QGIS runs and the install command (the message bar cuts long texts after two lines),
    and write the same to the log; return True if shown."""
    if iface is None or tensorflow_available():
        return False
    from qgis.core import Qgis, QgsMessageLog
    from qgis.PyQt.QtWidgets import QPushButton

    details = tensorflow_missing_text()
    QgsMessageLog.logMessage(details, TITLE, Qgis.MessageLevel.Warning)
    bar = iface.messageBar()
    item = bar.createMessage(TITLE, tr("TensorFlow is not installed in QGIS's Python: the algorithms cannot run yet."))
    button = QPushButton(tr("Details"), item)
    button.setObjectName("seamlessTensorflowDetails")
    button.clicked.connect(lambda: show_details(iface.mainWindow(), details))
    item.layout().addWidget(button)
    bar.pushWidget(item, Qgis.MessageLevel.Warning, 0)
    return True


def show_details(parent, details: str):
    """The full text in a non-modal box whose text can be selected and copied; returns the box."""
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtWidgets import QMessageBox

    box = QMessageBox(QMessageBox.Icon.Warning, tr("{}: TensorFlow is missing").format(TITLE), details,
                      QMessageBox.StandardButton.Close, parent)
    box.setObjectName("seamlessTensorflowMissing")
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setModal(False)
    box.show()
    return box
