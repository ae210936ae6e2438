"""What the desktop user is told at plugin load: one message-bar notice when TensorFlow is missing, whose Details
offer to install it (the algorithm seamless:installdependencies, in its own dialog: progress, log, Cancel)."""

from ..engine.dependencies import tensorflow_missing_text, tensorflow_problem
from .profile import dependencies_folder

TITLE = "Seamless Inference"
INSTALL_ALGORITHM = "seamless:installdependencies"


def tr(text: str) -> str:
    """Translate a user-facing string (the algorithms' context)."""
    from qgis.PyQt.QtCore import QCoreApplication

    return QCoreApplication.translate("SeamlessInference", text)


def notify_missing_tensorflow(iface) -> bool:
    """If TensorFlow is missing, too old or its numpy too old (seen without importing it), show one short warning
    line in the message bar whose Details button gives the interpreter QGIS runs, the Install button and the
    install command (the message bar cuts long texts after two lines), and write the same to the log; return
    True if shown."""
    problem = tensorflow_problem() if iface is not None else ""
    if not problem:
        return False
    from qgis.core import Qgis, QgsMessageLog
    from qgis.PyQt.QtWidgets import QPushButton

    details = tensorflow_missing_text(dependencies_folder(), problem)
    QgsMessageLog.logMessage(details, TITLE, Qgis.MessageLevel.Warning)
    bar = iface.messageBar()
    item = bar.createMessage(TITLE, tr("{}: the algorithms cannot run yet.").format(problem.split(" (")[0]))
    button = QPushButton(tr("Details"), item)
    button.setObjectName("seamlessTensorflowDetails")
    button.clicked.connect(lambda: show_details(iface.mainWindow(), details))
    item.layout().addWidget(button)
    bar.pushWidget(item, Qgis.MessageLevel.Warning, 0)
    _NOTICE[:] = [bar, item]
    return True


def show_details(parent, details: str):
    """The full text in a non-modal box whose text can be selected and copied, with an Install button that starts
    the installer; returns the box."""
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtWidgets import QMessageBox

    box = QMessageBox(QMessageBox.Icon.Warning, tr("{}: TensorFlow is missing").format(TITLE), details,
                      QMessageBox.StandardButton.Close, parent)
    box.setObjectName("seamlessTensorflowMissing")
    button = box.addButton(tr("Install"), QMessageBox.ButtonRole.AcceptRole)
    button.setObjectName("seamlessInstallTensorflow")
    button.clicked.connect(lambda: start_install())
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setModal(False)
    box.show()
    return box


_DIALOGS = []  # the installer's dialogs, kept alive while they show
_NOTICE = []  # the message bar and the notice in it (a slot whose closure holds them crashed PyQt 5.15 here)


def start_install():
    """Open the installer's algorithm dialog (Install mode) and run it at once: its progress bar, log and Cancel
    are Processing's own; once it has installed, the notice leaves the message bar; returns the dialog."""
    import processing

    dialog = processing.createAlgorithmDialog(INSTALL_ALGORITHM, {"MODE": 0})
    _DIALOGS[:] = [dialog]
    dialog.algorithmFinished.connect(lambda successful, results: installed(successful, results))
    dialog.show()
    dialog.runAlgorithm()
    return dialog


def installed(successful: bool, results: dict) -> None:
    """After an install: the notice goes; when QGIS must restart first, one line in its place says so."""
    if not successful or not _NOTICE:
        return
    from qgis.core import Qgis
    from qgis.PyQt import sip

    bar, notice = _NOTICE
    if not sip.isdeleted(notice):
        bar.popWidget(notice)
    if results.get("RESTART"):
        bar.pushMessage(TITLE, tr("TensorFlow is installed: restart QGIS to use it."), Qgis.MessageLevel.Info, 0)
